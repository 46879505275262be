"""`--config FILE` and the flags derived from the config dataclasses of `ftrl train`, `loop`, `sft` and `demo`.

The commands run for real up to the point where they would train: the function that trains (or runs the loop or
the demo) is replaced by one that records the config it was given.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from ftrl import cli
from ftrl.cli import app
from ftrl.cli.common import FLAG_NAMES
from ftrl.cli_config import apply_config, config_fields, read_config
from ftrl.construction.config import BuildOptions
from ftrl.eval.benchmarks import BenchConfig
from ftrl.recipes.demo import DEMO_SETS, DemoConfig
from ftrl.recipes.loop import LOOP_SETS, LoopConfig
from ftrl.reward.spec import RewardSpec
from ftrl.rollout.load import EvalConfig, SampleConfig
from ftrl.settings import Placement, setting, setting_table
from ftrl.train.config import SFTConfig, TrainConfig, make_config

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "configs"
CONFIGS = {
    "train": TrainConfig,
    "loop": LoopConfig,
    "sft": SFTConfig,
    "demo": DemoConfig,
    "sample": SampleConfig,
    "eval": EvalConfig,
    "build": BuildOptions,
    "bench": BenchConfig,
}
#: Fields a command sets itself: no flag.
OMITTED = {"loop": LOOP_SETS, "demo": LOOP_SETS + DEMO_SETS, "bench": ("envs",)}
#: The flags of these commands before they were derived from the dataclasses; they must keep working.
OLD_FLAGS = {
    "train": "--model --data --out --algo --reward --preset --lora --no-lora --steps --n --batch-states "
    "--mini-batch-states --max-new-tokens --max-prompt-tokens --lr --temperature --filter-groups --no-filter-groups "
    "--gen-batch-states --kl-coef --freeze-layers --save-every --seed --device --dtype --overwrite",
    "sft": "--model --envs --out --epochs --lr --lora --no-lora --freeze-layers --device --dtype --overwrite",
    "loop": "--model --envs --eval-envs --out --rounds --algo --preset --steps --lora --no-lora --max-new-tokens "
    "--max-turns --train-max-new-tokens --save-every --warm-start-envs --warm-start-epochs --warm-start-lr --overwrite",
    "demo": "--out --quick --no-quick --profile --model --seed",
    "sample": "--model --envs --out --limit --max-turns --temperature --max-new-tokens --batch-size --base-url "
    "--api-key-file --enable-thinking --prompt --threads --device --dtype --engine --timeout --n-per-env --overwrite",
    "eval": "--model --envs --out --limit --max-turns --temperature --max-new-tokens --batch-size --base-url "
    "--api-key-file --enable-thinking --prompt --threads --device --dtype --engine --timeout --matcher --overwrite",
    "build": "--out --backend --n --scenarios --seed --split --domains --exclude-domains --min-hops --max-hops "
    "--min-tools --max-tools --min-params --max-params --workers --base-url --model --api-key-file "
    "--seed-questions --concurrency --probe-model --target-solve-rate --probe-n --probe-out --overwrite",
    "bench": "--model --out --data --limit --enable-thinking --trials --user-model --base-url --user-base-url "
    "--base-model --rule --max-new-tokens --max-turns --batch-size --overwrite",
}


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.console, "width", 400)


def _options(command: str) -> dict[str, Any]:
    """Every flag of a command (`--lora` and `--no-lora` alike) and its click parameter."""
    params = typer.main.get_command(app).commands[command].params
    return {flag: param for param in params for flag in (*param.opts, *getattr(param, "secondary_opts", ()))}


def _field_paths(cls: type, prefix: str = "") -> list[str]:
    hints = typing.get_type_hints(cls)
    paths = []
    for item in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[item.name]):
            paths += _field_paths(hints[item.name], f"{prefix}{item.name}.")
        else:
            paths.append(f"{prefix}{item.name}")
    return paths


@pytest.mark.parametrize("command", CONFIGS)
def test_every_field_has_a_flag_with_help(command: str) -> None:
    options = _options(command)
    assert "--config" in options
    paths = _field_paths(CONFIGS[command])
    assert len(paths) >= 10
    for path in paths:
        if path in OMITTED.get(command, ()):
            continue
        flag = FLAG_NAMES.get(path) or "--" + path.replace("_", "-")
        assert flag in options, f"{command}: field {path} has no flag {flag}"
        assert options[flag].help and len(options[flag].help) > 8, f"{command}: {flag} has no help"


@pytest.mark.parametrize("command", CONFIGS)
def test_the_flags_users_typed_before_still_exist(command: str) -> None:
    options = _options(command)
    assert [flag for flag in OLD_FLAGS[command].split() if flag not in options] == []


def test_nested_fields_are_dotted_flags_and_short_ones_where_unambiguous() -> None:
    options = _options("demo")
    assert options["--difficulty.min-hops"] is options["--min-hops"]
    # `seed` is a field of DemoConfig, not of Difficulty, so `--seed` stays the top-level one
    assert options["--seed"].name == "field__seed"


@dataclasses.dataclass(kw_only=True)
class _Part:
    depth: int = setting(1, "Depth of it.")
    seed: int = 0


@dataclasses.dataclass(kw_only=True)
class _Whole:
    seed: int = setting(0, "The seed.")
    part: _Part = setting_table(_Part, "A part.")


def test_flag_names_and_help_of_nested_keyword_only_dataclasses() -> None:
    fields = {item.path: item for item in config_fields(_Whole)}
    assert {path: item.flags for path, item in fields.items()} == {
        "seed": ("--seed",),
        "part.depth": ("--depth", "--part.depth"),
        "part.seed": ("--part.seed",),
    }
    assert {path: item.help for path, item in fields.items()} == {
        "seed": "The seed.",
        "part.depth": "Depth of it.",
        "part.seed": "",
    }


@pytest.mark.parametrize("command", CONFIGS)
def test_no_config_field_lacks_help_metadata(command: str) -> None:
    """Help lives beside each field (`ftrl.settings.setting`), not in comments a parser must find."""
    missing = [item.path for item in config_fields(CONFIGS[command]) if not item.help]
    assert missing == []


def test_importing_the_command_line_loads_no_torch() -> None:
    """The flags come from the dataclasses at import; torch must still load only in a command (after the thread
    settings, `ftrl.threads`)."""
    code = "import sys, ftrl.cli; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def _record(monkeypatch: pytest.MonkeyPatch, module: str, name: str) -> list[Any]:
    """Replace `module.name` (the function a command ends in) by one that records its first argument."""
    calls: list[Any] = []
    monkeypatch.setattr(f"{module}.{name}", lambda config, *args, **kwargs: calls.append(config) or "saved")
    return calls


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_loop_reads_the_file_and_flags_override_it(
    tmp_path: Path, sample_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _record(monkeypatch, "ftrl.recipes.loop", "run_loop")
    config = _write(
        tmp_path / "loop.toml",
        f'envs = "{sample_path}"\neval_envs = "{sample_path}"\nrounds = 5\nmax_turns = 4\n'
        "[train]\nmax_new_tokens = 33\nlora = true\n",
    )
    result = runner.invoke(app, ["loop", "--config", str(config), "--out", str(tmp_path / "run"), "--rounds", "2"])
    assert result.exit_code == 0, result.output
    assert calls == [
        LoopConfig(
            envs=str(sample_path),
            eval_envs=str(sample_path),
            out=str(tmp_path / "run"),
            rounds=2,  # the flag wins
            max_turns=4,
            train=make_config("cpu", max_new_tokens=33, lora=True),
        )
    ]
    assert json.loads((tmp_path / "run" / "ftrl-run.json").read_text())["settings"]["max_turns"] == 4


def test_loop_old_flags_set_the_fields_they_set_before(
    tmp_path: Path, sample_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _record(monkeypatch, "ftrl.recipes.loop", "run_loop")
    envs, out = str(sample_path), str(tmp_path / "run")
    args = (
        f"loop --model m --envs {envs} --eval-envs {envs} --out {out} --rounds 4 --algo reinforce_plus_plus "
        f"--preset paper --steps 3 --lora --max-new-tokens 64 --max-turns 5 --train-max-new-tokens 48 --save-every 2 "
        f"--warm-start-envs {envs} --warm-start-epochs 2 --warm-start-lr 0.001 --collect-temperature 0.7 "
        "--envs-per-round 6 --overwrite"
    )
    result = runner.invoke(app, args.split())
    assert result.exit_code == 0, result.output
    assert calls == [
        LoopConfig(
            model="m",
            envs=envs,
            eval_envs=envs,
            out=out,
            rounds=4,
            max_new_tokens=64,
            max_turns=5,
            collect_temperature=0.7,
            envs_per_round=6,
            train=make_config("paper", algo="reinforce_plus_plus", steps=3, lora=True, max_new_tokens=48, save_every=2),
            warm_start=SFTConfig(envs=envs, epochs=2, lr=0.001),
        )
    ]
    refused = runner.invoke(app, [*args.split(), "--train.model", "x"])  # the loop sets it per round: no flag
    assert refused.exit_code != 0 and "No such option" in refused.output


def test_demo_applies_profile_then_file_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _record(monkeypatch, "ftrl.recipes.demo", "run_demo")
    config = _write(
        tmp_path / "demo.toml",
        'seed = 3\ntest_envs = 5\nheld_out = ["river"]\n[difficulty]\nmax_hops = 4\nmin_tools = 3\n'
        "[train]\nsteps = 7\nbatch_states = 4\n",
    )
    result = runner.invoke(
        app, ["demo", "--profile", "quick", "--config", str(config), "--steps", "2", "--max-hops", "5"]
    )
    assert result.exit_code == 0, result.output
    quick = DemoConfig.quick()
    expected = dataclasses.replace(
        quick,
        out="runs/demo-quick-seed3",  # a seed from the file names the folder as `--seed` does
        seed=3,
        test_envs=5,
        train=dataclasses.replace(quick.train, steps=2, batch_states=4, mini_batch_states=4),  # the mini batch follows
        held_out=("river",),
        difficulty=dataclasses.replace(quick.difficulty, max_hops=5, min_tools=3),
    )
    assert calls == [expected]


def test_demo_keeps_its_old_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _record(monkeypatch, "ftrl.recipes.demo", "run_demo")
    assert runner.invoke(app, ["demo", "--quick", "--seed", "2", "--model", "m"]).exit_code == 0
    assert runner.invoke(app, ["demo", "--seed", "1", "--out", str(tmp_path / "d")]).exit_code == 0
    assert runner.invoke(app, ["demo", "--profile", "long"]).exit_code == 0
    assert calls == [
        dataclasses.replace(DemoConfig.quick(model="m"), seed=2, out="runs/demo-quick-seed2"),
        dataclasses.replace(DemoConfig(), seed=1, out=str(tmp_path / "d")),
        DemoConfig.long(),
    ]


def _model_folder(tmp_path: Path) -> Path:
    """Enough of a model folder for the checks `ftrl train` and `ftrl sft` make before loading one."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


def test_train_reads_the_file_over_the_preset_and_flags_over_the_file(
    tmp_path: Path, sample_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _record(monkeypatch, "ftrl.train.trainer", "train")
    model = _model_folder(tmp_path)
    config = _write(
        tmp_path / "train.toml",
        f'model = "{model}"\ndata = "{sample_path}"\nn = 4\nbatch_states = 4\nlr = 0.5\ntop_p = 0.9\n',
    )
    out = str(tmp_path / "run")
    result = runner.invoke(app, ["train", "--config", str(config), "--out", out, "--n", "6", "--preset", "paper"])
    assert result.exit_code == 0, result.output
    expected = make_config(
        "paper", model=str(model), data=str(sample_path), out=out, n=6, batch_states=4, mini_batch_states=4, lr=0.5
    )
    assert calls == [dataclasses.replace(expected, top_p=0.9)]


def test_train_old_flags_set_the_fields_they_set_before(
    tmp_path: Path, sample_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _record(monkeypatch, "ftrl.train.trainer", "train")
    model, out = str(_model_folder(tmp_path)), str(tmp_path / "run")
    args = (
        f"train --model {model} --data {sample_path} --out {out} --algo reinforce_plus_plus --reward p "
        "--preset cpu --lora --steps 3 --n 4 --batch-states 2 --mini-batch-states 1 --max-new-tokens 32 "
        "--max-prompt-tokens 900 --lr 0.01 "
        "--temperature 0.5 --filter-groups --gen-batch-states 4 --kl-coef 0 --freeze-layers 2 --save-every 1 "
        "--seed 9 --device cpu --dtype fp32 --overwrite"
    )
    result = runner.invoke(app, args.split())
    assert result.exit_code == 0, result.output
    assert calls == [
        make_config(
            "cpu",
            model=model,
            data=str(sample_path),
            out=out,
            algo="reinforce_plus_plus",
            reward=RewardSpec(kind="p", matcher="strict"),
            lora=True,
            steps=3,
            n=4,
            batch_states=2,
            mini_batch_states=1,
            max_new_tokens=32,
            max_prompt_tokens=900,
            lr=0.01,
            temperature=0.5,
            filter_groups=True,
            gen_batch_states=4,
            kl_coef=0.0,
            freeze_layers=2,
            save_every=1,
            seed=9,
            placement=Placement(device="cpu", dtype="fp32"),
        )
    ]


def test_a_file_value_that_breaks_a_config_rule_is_reported(tmp_path: Path, sample_path: Path) -> None:
    config = _write(tmp_path / "train.toml", "batch_states = 3\nmini_batch_states = 2\n")
    args = ["train", "--config", str(config), "--data", str(sample_path), "--out", str(tmp_path / "run")]
    result = runner.invoke(app, args)
    assert result.exit_code != 0 and "batch_states must be a multiple of mini_batch_states" in result.output


def test_sft_reads_the_file(tmp_path: Path, sample_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _record(monkeypatch, "ftrl.train.sft", "sft")
    model, out = str(_model_folder(tmp_path)), str(tmp_path / "run")
    config = _write(tmp_path / "sft.toml", f'envs = "{sample_path}"\nout = "{out}"\nbatch_size = 2\nepochs = 3\n')
    args = ["sft", "--config", str(config), "--model", model, "--epochs", "1", "--lora", "--freeze-layers", "2"]
    result = runner.invoke(app, [*args, "--lr", "0.001", "--device", "cpu", "--dtype", "fp32"])
    assert result.exit_code == 0, result.output
    assert calls == [
        SFTConfig(
            model=model,
            envs=str(sample_path),
            out=out,
            epochs=1,
            lr=0.001,
            batch_size=2,
            lora=True,
            freeze_layers=2,
            placement=Placement(device="cpu", dtype="fp32"),
        )
    ]


@pytest.mark.parametrize(
    ("command", "missing"),
    [("train", "--out"), ("sft", "--envs"), ("loop", "--eval-envs")],
)
def test_required_fields_come_from_a_flag_or_the_file(tmp_path: Path, command: str, missing: str) -> None:
    given = {"train": ["--data", "x.jsonl"], "sft": ["--out", "o"], "loop": ["--envs", "e", "--out", "o"]}[command]
    result = runner.invoke(app, [command, *given])
    assert result.exit_code != 0 and f"missing {missing}" in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("example", "base"), [("train-demo-rl.toml", make_config("cpu")), ("demo-small.toml", DemoConfig())]
)
def test_example_configs_load(example: str, base: Any) -> None:
    config = apply_config(base, read_config(type(base), EXAMPLES / example))
    written = tomllib.loads((EXAMPLES / example).read_text())
    for key, value in written.items():
        expected = tuple(value) if isinstance(value, list) else value
        got = getattr(config, key)
        if isinstance(value, dict):
            assert {name: getattr(got, name) for name in value} == value
        else:
            assert got == expected, key


def test_build_takes_list_flags_repeated_or_comma_separated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _record(monkeypatch, "ftrl.construction.driver", "build_environments")
    args = ["build", "--out", str(tmp_path / "e.jsonl"), "--scenarios", "single_hop,multi_hop"]
    args += ["--scenarios", "parallel_single_hop", "--exclude-domains", "river", "--min-width", "3", "--max-width", "3"]
    runner.invoke(app, args)  # the recorded call returns no report, so the command then fails: only the call counts
    (config,) = calls
    assert config.scenarios == ("single_hop", "multi_hop", "parallel_single_hop")
    assert config.exclude_domains == ("river",) and config.domains is None
    assert (config.difficulty.min_width, config.difficulty.max_width) == (3, 3)  # every Difficulty knob is a flag


def test_bench_runs_the_model_as_eval_would(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`BenchConfig` extends eval's options: the engine, threads and placement reach the model under test."""
    calls: list[Any] = []

    def run(name: str, config: Any) -> dict:
        calls.append((name, config))
        config.out_dir.mkdir(parents=True, exist_ok=True)
        (config.out_dir / "summary.md").write_text("done")
        return {}

    monkeypatch.setattr("ftrl.eval.benchmarks.run_benchmark", run)
    args = ["bench", "mmlu", "--model", "m", "--out", str(tmp_path / "b"), "--engine", "int8", "--threads", "1"]
    (tmp_path / "data.jsonl").write_text("")
    result = runner.invoke(app, [*args, "--device", "cpu", "--data", str(tmp_path / "data.jsonl")])
    assert result.exit_code == 0, result.output
    ((name, config),) = calls
    spec = config.spec()
    assert name == "mmlu" and config.data == str(tmp_path / "data.jsonl")
    assert (spec.engine, spec.threads, spec.device, spec.batch_size) == ("int8", 1, "cpu", 8)
