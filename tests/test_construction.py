"""The procedural construction pipeline: verified, reproducible, resumable environments from a synthetic world."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftrl.construction.base import Draft, Stage
from ftrl.construction.config import BuildConfig
from ftrl.construction.driver import build_environments, rejections_path
from ftrl.construction.procedural import ProceduralBackend
from ftrl.construction.stats import file_stats, stats_for_path
from ftrl.construction.verify import verify_each
from ftrl.construction.world import DOMAIN_NAMES, make_world
from ftrl.env import SCENARIOS, read_envs
from ftrl.env.validate import validate_environment
from ftrl.reward.episode import EpisodeScore
from ftrl.reward.match import answer_verify
from ftrl.runtime import RuntimeConfig, ToolRuntime


@pytest.fixture(scope="module")
def runtime():
    with ToolRuntime(RuntimeConfig(timeout_s=5.0, workers=1)) as rt:
        yield rt


def build(tmp_path: Path, runtime, name: str = "envs.jsonl", **options) -> Path:
    out = tmp_path / name
    build_environments(BuildConfig(**options), out, runtime=runtime)
    return out


def replay_gold(runtime, env) -> tuple[EpisodeScore, list[str]]:
    """Replay the gold calls one per turn through the runtime and score them like an evaluation would."""
    calls = env.extra["gold_calls"]
    with runtime.episode(env.codes) as episode:
        outputs = episode.call_many([(c["function"]["name"], c["function"]["arguments"]) for c in calls])
    score = EpisodeScore.start(env.unsolved_set)
    for call, output in zip(calls, outputs, strict=True):
        score.add_turn({"role": "assistant", "tool_calls": [call]}, [output])
    return score, outputs


def expected_final_answer(env) -> str:
    """Recompute the final answer independently from the sub-answers (ends = sub-questions nobody depends on)."""
    subs = env.extra["sub_questions"]
    needed = {d for sub in subs for d in sub["depends_on"]}
    ends = [sub["answer"] for index, sub in enumerate(subs) if index not in needed]
    aggregation = env.extra["aggregation"]
    if aggregation == "last":
        return subs[-1]["answer"]
    if aggregation == "list":
        return ", ".join(ends)
    numbers = [float(e) if e[:1].isdigit() and "-" not in e else e for e in ends]
    decimals = "." in ends[0]
    if aggregation in ("sum", "difference"):
        value = sum(numbers) if aggregation == "sum" else abs(numbers[0] - numbers[1])
        return f"{value:.1f}" if decimals else str(int(round(value)))
    if aggregation == "yes_no":
        return "yes" if numbers[0] > numbers[1] else "no"
    assert aggregation == "compare"
    return env.answer  # checked separately: the winner's value is the maximum


def check_environments(envs, runtime) -> None:
    for env in envs:
        assert validate_environment(env) == [], env.extra["index"]
        assert runtime.check(env.codes) == {name: None for name in env.codes}
        score, outputs = replay_gold(runtime, env)
        assert score.solve_f1 == 1.0 and score.n_solved == env.pending_count, (env.extra["index"], outputs)
        assert env.answer == expected_final_answer(env), env.extra["index"]
        if env.extra["aggregation"] == "last":
            assert answer_verify(outputs[-1], env.answer)
        assert env.messages[0]["content"].endswith("Question: " + env.question.split("Question: ", 1)[1])
        assert env.data_source == f"self/{env.scenario}" and env.scenario in SCENARIOS


def test_stages_follow_the_shared_interface(runtime) -> None:
    backend = ProceduralBackend(BuildConfig(), runtime)
    assert all(isinstance(stage, Stage) for stage in [*backend.stages, backend.deploy])
    assert [stage.name for stage in [*backend.stages, backend.deploy]] == [
        "decompose",
        "document",
        "integrate",
        "scale",
        "deploy",
    ]
    draft = backend.deploy.run(backend.draft(3))
    assert isinstance(draft, Draft) and set(draft.codes) == set(draft.tool_names)


def test_built_environments_are_verified_and_solvable(tmp_path: Path, runtime) -> None:
    out = build(tmp_path, runtime, n=120, seed=7)
    envs = read_envs(out)
    assert len(envs) == 120 and [env.extra["index"] for env in envs] == list(range(120))
    assert {env.scenario for env in envs} == set(SCENARIOS)
    check_environments(envs, runtime)


@pytest.mark.slow
def test_thousand_environments_are_verified_and_match_paper_statistics(tmp_path: Path, runtime) -> None:
    out = build(tmp_path, runtime, n=1000, seed=11)
    envs = read_envs(out)
    check_environments(envs, runtime)
    groups = file_stats(envs).groups
    assert groups["single_hop"].sub_answers == 1
    assert groups["parallel_single_hop"].sub_answers == 2
    assert 4.5 <= groups["multi_hop"].sub_answers <= 7
    assert 6.5 <= groups["parallel_multi_hop"].sub_answers <= 9
    overall = groups["all"]
    assert 6 <= overall.params_per_tool <= 8
    assert 0.5 <= overall.distractor_share <= 0.68
    assert 0.2 <= overall.params_with_enum <= 0.35
    assert 1.2 <= groups["parallel_single_hop"].solver_tools <= 1.6


def test_statistics_are_in_the_papers_range(tmp_path: Path, runtime) -> None:
    envs = read_envs(build(tmp_path, runtime, n=200, seed=3))
    groups = file_stats(envs).groups
    assert groups["single_hop"].sub_answers == 1 and groups["parallel_single_hop"].sub_answers == 2
    assert 4 <= groups["multi_hop"].sub_answers <= 7.5
    assert 6 <= groups["parallel_multi_hop"].sub_answers <= 10
    assert 5.5 <= groups["all"].params_per_tool <= 8
    assert 0.45 <= groups["all"].distractor_share <= 0.7
    assert 0.15 <= groups["all"].params_with_enum <= 0.4


def test_same_seed_gives_identical_files_and_other_seeds_differ(tmp_path: Path, runtime) -> None:
    first = build(tmp_path, runtime, "a.jsonl", n=40, seed=5)
    second = build(tmp_path, runtime, "b.jsonl", n=40, seed=5)
    other = build(tmp_path, runtime, "c.jsonl", n=40, seed=6)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_resume_after_a_crash_gives_the_uninterrupted_file(tmp_path: Path, runtime) -> None:
    whole = build(tmp_path, runtime, "whole.jsonl", n=50, seed=2)
    crashed = tmp_path / "crashed.jsonl"
    config = BuildConfig(n=50, seed=2)

    def crash(done: int, total: int) -> None:
        if done == 23:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_environments(config, crashed, progress=crash, runtime=runtime)
    lines = crashed.read_bytes().splitlines(keepends=True)
    assert len(lines) == 23
    crashed.write_bytes(b"".join(lines[:20]) + lines[20][: len(lines[20]) // 2])  # a torn row, as after a kill
    report = build_environments(config, crashed, runtime=runtime)
    assert report.resumed == 20 and report.written == 30
    assert crashed.read_bytes() == whole.read_bytes()
    assert build_environments(config, crashed, runtime=runtime).written == 0  # complete: nothing to do


def test_resume_refuses_a_different_config(tmp_path: Path, runtime) -> None:
    out = build(tmp_path, runtime, n=5, seed=1)
    with pytest.raises(ValueError, match="another config"):
        build_environments(BuildConfig(n=10, seed=2), out, runtime=runtime)


def test_excluded_domains_never_appear(tmp_path: Path, runtime) -> None:
    held_out = ("person", "city", "country")
    envs = read_envs(build(tmp_path, runtime, n=60, seed=4, exclude_domains=held_out))
    world = make_world(4)
    held_out_names = {name for domain in held_out for name in world.names(domain)}
    for env in envs:
        assert not set(env.extra["domain_world"].split("+")) & set(held_out)
        assert not any(
            name.startswith(("get_person", "get_city", "get_country", "person_", "city_", "country_"))
            for name in env.tool_names
        )
        assert not any(sub["answer"] in held_out_names for sub in env.extra["sub_questions"])
    only = read_envs(build(tmp_path, runtime, "only.jsonl", n=20, seed=4, domains=("book",)))
    assert {env.extra["domain_world"] for env in only} == {"book"}
    with pytest.raises(ValueError, match="unknown domains"):
        build(tmp_path, runtime, "x.jsonl", n=1, domains=("dragons",))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("    return {'status': 'ok', 'value': 'Nothing useful'}\n", "does not return sub-answer"),
        ("    raise RuntimeError('boom')\n", "crashed"),
        ("    import os\n    return os.listdir('/')\n", "does not return sub-answer"),
        ("    while True:\n        pass\n", "crashed"),
    ],
)
def test_hostile_or_wrong_code_is_rejected_with_a_reason(runtime, body: str, reason: str) -> None:
    backend = ProceduralBackend(BuildConfig(), runtime)
    draft = backend.deploy.write(backend.draft(2))
    tool = draft.tool_of[0]
    draft.codes[tool] = f"def {tool}(**kwargs):\n{body}"
    (outcome,) = verify_each(runtime, [draft])
    assert outcome.stage == "deploy" and reason in outcome.reason


def test_code_that_leaks_answers_for_bad_arguments_is_rejected(runtime) -> None:
    backend = ProceduralBackend(BuildConfig(), runtime)
    draft = backend.deploy.write(backend.draft(0))
    tool, answer = draft.tool_of[0], draft.sub_questions[0].answer
    draft.codes[tool] = f"def {tool}(**kwargs):\n    return {{'value': {answer!r}}}\n"
    (outcome,) = verify_each(runtime, [draft])
    assert outcome.stage == "deploy" and "bad arguments" in outcome.reason


def test_rejections_go_to_the_sidecar_and_do_not_count(
    tmp_path: Path, runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ftrl.construction import deploy

    real_write = deploy.ProceduralDeploy.write

    def write_wrong_code_for_odd_indices(self, draft):
        draft = real_write(self, draft)
        if draft.index % 2:
            tool = draft.tool_of[0]
            draft.codes[tool] = f"def {tool}(**kwargs):\n    return 'no idea'\n"
        return draft

    monkeypatch.setattr(deploy.ProceduralDeploy, "write", write_wrong_code_for_odd_indices)
    out = tmp_path / "r.jsonl"
    report = build_environments(BuildConfig(n=5, seed=1), out, runtime=runtime)
    rows = [json.loads(line) for line in rejections_path(out).read_text().splitlines()]
    assert report.written == 5 and report.rejected == len(rows) == 4
    assert [row["index"] for row in rows] == [1, 3, 5, 7]
    assert all(row["stage"] == "deploy" and "does not return sub-answer" in row["reason"] for row in rows)
    assert [env.extra["index"] for env in read_envs(out)] == [0, 2, 4, 6, 8]
    assert list(stats_for_path(out).rejections.values()) == [4]


def test_domains_are_many_and_fictional() -> None:
    world = make_world(0)
    assert len(DOMAIN_NAMES) >= 8
    names = [name for domain in DOMAIN_NAMES for name in world.names(domain)]
    assert len(names) == len(set(n.lower() for n in names))


def test_stats_work_on_the_reference_sample(sample_path: Path) -> None:
    stats = stats_for_path(sample_path)
    assert stats.groups["all"].envs == 8
    assert 0.4 < stats.groups["all"].distractor_share < 0.7
    assert stats.groups["parallel_multi_hop"].sub_answers == 7.5


def test_cli_build_then_stats(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ftrl.cli import app

    out = tmp_path / "cli.jsonl"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "build",
            "--n",
            "8",
            "--seed",
            "3",
            "--scenarios",
            "multi_hop,single_hop",
            "--exclude-domains",
            "person",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    envs = read_envs(out)
    assert len(envs) == 8 and {env.scenario for env in envs} == {"multi_hop", "single_hop"}
    result = runner.invoke(app, ["stats", str(out), "--plot", str(tmp_path / "stats.png")])
    assert result.exit_code == 0, result.output
    assert "sub_answers" in result.output and (tmp_path / "stats.png").stat().st_size > 0
    bad = runner.invoke(app, ["build", "--n", "1", "--scenarios", "zigzag", "--out", str(tmp_path / "x.jsonl")])
    assert bad.exit_code == 2 and "unknown scenarios" in bad.output
