"""General capability scorers: extraction rules, code execution in the isolated runtime, gold runs, drift."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftrl.eval.benchmarks.common import LookupPolicy
from ftrl.eval.benchmarks.general import (
    TASKS,
    conversation,
    drift,
    drift_paragraphs,
    extract_bbh,
    extract_choice,
    extract_code,
    extract_last_number,
    gold_policy,
    gsm8k_target,
    last_boxed,
    lm_eval_available,
    lm_eval_command,
    load_rows,
    math_equal,
    normalize_math,
    run_general,
    run_program,
)

runtime_module = pytest.importorskip("ftrl.runtime")


@pytest.fixture(scope="module")
def runtime():
    with runtime_module.ToolRuntime(runtime_module.RuntimeConfig(workers=1, timeout_s=3)) as tool_runtime:
        yield tool_runtime


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("The answer is (C).", "C"),
        ("Let me think: A is wrong, B too. Answer: D", "D"),
        ("B. Because water boils at 100 C", "B"),
        ("(A)", "A"),
        ("I believe it is C, not A", "C"),
        ("no idea", None),
    ],
)
def test_mmlu_letter(text, letter):
    assert extract_choice(text) == letter


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("She has 3 apples and buys 4, so 7 in total. The answer is 7", "7"),
        ("Total: $1,234.50", "1234.5"),
        ("It costs 18.00 dollars", "18"),
        ("The temperature is -5 now", "-5"),
        ("nothing numeric", None),
    ],
)
def test_gsm8k_last_number(text, number):
    assert extract_last_number(text) == number


def test_gsm8k_target():
    assert gsm8k_target("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 1,072") == "1072"


@pytest.mark.parametrize(
    ("text", "boxed"),
    [
        ("so $x = \\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("first \\boxed{1} then \\boxed{\\{a, b\\}}", "\\{a, b\\}"),
        ("\\boxed{x^{2}+1}", "x^{2}+1"),
        ("\\boxed 5", "5"),
        ("no box", None),
    ],
)
def test_last_boxed(text, boxed):
    assert last_boxed(text) == boxed


@pytest.mark.parametrize(
    ("predicted", "gold"),
    [
        ("\\dfrac{1}{2}", "\\frac12"),
        ("0.5", "\\frac{1}{2}"),
        ("1/2", "\\frac{1}{2}"),
        ("x = 5", "5"),
        ("90^\\circ", "90"),
        ("\\left( 1, 2 \\right)", "(1,2)"),
        ("10\\%", "10"),
        ("\\sqrt2", "\\sqrt{2}"),
        ("\\$18", "18"),
    ],
)
def test_math_normalisation_equates(predicted, gold):
    assert math_equal(predicted, gold)


def test_math_normalisation_keeps_different_answers_apart():
    assert not math_equal("\\frac{1}{3}", "\\frac{1}{2}")
    assert not math_equal(None, "1")
    assert normalize_math(".5") == "\\frac{1}{2}"  # leading zero added, then 0.5 -> 1/2
    assert normalize_math(".25") == "0.25"


def test_bbh_exact_match_after_the_answer_is():
    assert extract_bbh("Step 1 ... So the answer is (B).") == "(B)"
    assert extract_bbh("so the answer is False.\n") == "False"
    assert extract_bbh("the answer is 24. Then the answer is 25.") == "25"
    assert extract_bbh("valid") == "valid"


def test_extract_code_prefers_fenced_block():
    assert extract_code("Here:\n```python\ndef f():\n    return 1\n```\nDone") == "def f():\n    return 1\n"
    assert extract_code("def f(): pass") == "def f(): pass"


HUMANEVAL = {
    "task_id": "HumanEval/0",
    "prompt": 'from typing import List\n\n\ndef add(a: int, b: int) -> int:\n    """Add two numbers."""\n',
    "canonical_solution": "    return a + b\n",
    "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
    "entry_point": "add",
}
MBPP = {
    "task_id": 11,
    "text": "Write a function to square a number.",
    "code": "def square(x):\n    return x * x",
    "test_list": ["assert square(3) == 9", "assert square(-2) == 4"],
    "test_setup_code": "",
}


def test_code_runs_in_the_runtime(runtime):
    assert run_program(runtime, "x = 1\nassert x == 1\n") == 1.0
    assert run_program(runtime, "assert 1 == 2\n") == 0.0
    assert run_program(runtime, "while True:\n    pass\n") == 0.0  # stopped by the runtime's timeout
    # the program cannot touch this process or the file system outside the worker's scratch folder
    assert run_program(runtime, "open('/tmp/ftrl_general_probe', 'w').write('x')\n") == 0.0
    assert not Path("/tmp/ftrl_general_probe").exists()


@pytest.mark.parametrize(
    ("reply", "passed"),
    [
        ("```python\n    return a + b\n```", 1.0),  # body only: appended to the prompt
        ("```python\ndef add(a, b):\n    return a + b\n```", 1.0),  # whole function
        ("```python\ndef add(a, b):\n    return a - b\n```", 0.0),
    ],
)
def test_humaneval_pass_at_1(runtime, reply, passed):
    assert TASKS["humaneval"].score(HUMANEVAL, reply, runtime) == passed


def test_mbpp_pass_at_1(runtime):
    assert TASKS["mbpp"].score(MBPP, "```python\ndef square(x):\n    return x ** 2\n```", runtime) == 1.0
    assert TASKS["mbpp"].score(MBPP, "def square(x):\n    return 2 * x", runtime) == 0.0


ROWS = {
    "mmlu": [{"question": "2+2?", "choices": ["3", "4", "5", "6"], "answer": 1, "subject": "elementary_mathematics"}],
    "bbh": [{"input": "not ( True ) and ( True ) is", "target": "False"}],
    "gsm8k": [{"question": "1+1?", "answer": "One plus one.\n#### 2"}],
    "math": [{"problem": "Half of 1?", "solution": "It is $\\boxed{\\frac{1}{2}}$."}],
    "humaneval": [HUMANEVAL],
    "mbpp": [MBPP],
}


@pytest.mark.parametrize("task", sorted(ROWS))
def test_gold_policy_scores_full_marks(task, tmp_path, runtime):
    data = tmp_path / f"{task}.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ROWS[task]))
    rows = load_rows(data, TASKS[task])
    summary = run_general(task, rows, gold_policy(task, rows), tmp_path / "out", runtime)
    assert summary == {"benchmark": task, "items": 1, "score": 100.0}


def test_wrong_answers_score_zero_and_runs_resume(tmp_path):
    rows = ROWS["gsm8k"] + [{"question": "2+3?", "answer": "#### 5"}]
    policy = LookupPolicy(default="The answer is 2")
    assert run_general("gsm8k", rows, policy, tmp_path)["score"] == 50.0
    policy.add(conversation(TASKS["gsm8k"], rows[1]), "The answer is 5")
    # finished rows are not answered again, so the fixed reply changes nothing
    assert run_general("gsm8k", rows, policy, tmp_path)["score"] == 50.0


def test_missing_fields_are_reported(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"question": "x"}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1: field 'answer': missing, needed by gsm8k"):
        load_rows(data, TASKS["gsm8k"])


def test_code_tasks_refuse_to_run_without_runtime(tmp_path):
    with pytest.raises(ValueError, match="needs a ToolRuntime"):
        run_general("mbpp", [MBPP], LookupPolicy(), tmp_path)


def test_lm_eval_command():
    command = lm_eval_command("/models/tuned", ["mmlu", "gsm8k"], "/out", batch_size=4)
    assert command == [
        "lm_eval",
        "--model",
        "hf",
        "--model_args",
        "pretrained=/models/tuned",
        "--tasks",
        "mmlu,gsm8k",
        "--batch_size",
        "4",
        "--output_path",
        "/out",
    ]
    assert lm_eval_command("m", ["humaneval"], "/o")[-1] == "--confirm_run_unsafe_code"


def test_lm_eval_runs_only_when_installed():
    if lm_eval_available():
        pytest.skip("lm-eval is installed; the real run is too slow for the default suite")
    from ftrl.eval.benchmarks.general import run_lm_eval

    assert run_lm_eval("/nonexistent", ["mmlu"]) is None


def test_drift_of_tiny_models():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")

    class CharTokenizer:
        def __call__(self, text, return_tensors="pt"):
            return type("Encoded", (), {"input_ids": torch.tensor([[ord(c) % 64 for c in text]])})()

    config = transformers.GPT2Config(vocab_size=64, n_positions=128, n_embd=16, n_layer=1, n_head=2)
    torch.manual_seed(0)
    base = transformers.GPT2LMHeadModel(config).eval()
    same = drift(base, base, CharTokenizer(), ["hello world, hello models"], max_tokens=64)
    assert same["kl_tuned_base"] == pytest.approx(0.0, abs=1e-6)
    assert same["ppl_tuned"] == pytest.approx(same["ppl_base"])
    assert same["tokens"] == len("hello world, hello models") - 1
    tuned = transformers.GPT2LMHeadModel(config).eval()  # different random weights
    moved = drift(tuned, base, CharTokenizer(), ["hello world, hello models"], max_tokens=64)
    assert moved["kl_tuned_base"] > 0.0


def test_bundled_drift_text_is_package_data():
    paragraphs = drift_paragraphs()
    assert len(paragraphs) == 6 and all(len(p) > 200 for p in paragraphs)


@pytest.mark.slow
def test_drift_of_the_embedded_model_against_itself(tmp_path):
    from ftrl.eval.benchmarks.general import run_drift
    from ftrl.models import ModelNotFound

    try:
        summary = run_drift("embedded", "embedded", tmp_path)
    except ModelNotFound as error:
        pytest.skip(str(error))
    assert summary["kl_tuned_base"] == pytest.approx(0.0, abs=1e-6)
    assert summary["ppl_tuned"] == pytest.approx(summary["ppl_base"])
    assert 1.0 < summary["ppl_base"] < 1000.0
    assert "KL(tuned ‖ base)" in (tmp_path / "summary.md").read_text()


EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "general"


@pytest.mark.parametrize("task", sorted(TASKS))
def test_example_files_load_and_their_gold_answers_score_full_marks(task, tmp_path, runtime):
    rows = load_rows(EXAMPLES / f"{task}.jsonl", TASKS[task])
    summary = run_general(task, rows, gold_policy(task, rows), tmp_path, runtime)
    assert summary == {"benchmark": task, "items": 4, "score": 100.0}
    # and a policy that answers nothing useful scores zero on them
    assert run_general(task, rows, LookupPolicy(default="no idea"), tmp_path / "wrong", runtime)["score"] == 0.0
