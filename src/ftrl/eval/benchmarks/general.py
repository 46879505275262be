"""General capability checks: did tool-use training keep the model's knowledge, reasoning, maths and coding?

The paper reports MMLU, BBH, GSM8K, MATH, HumanEval and MBPP before and after training. Three ways to get such
numbers here:

1. `run_general`: zero-shot prompts over user-supplied data files, scored with the usual extraction rules
   (`TASKS` says which fields each file needs). Code is executed ONLY in the isolated tool runtime.
2. `lm_eval_command` / `run_lm_eval`: the same suites through lm-evaluation-harness when it is installed (the
   numbers comparable with published ones; lm-eval runs generated code itself, outside our runtime).
3. `drift`: no data download at all: perplexity of base and tuned model on a small bundled text, and the mean
   per-token KL(tuned || base). A tuned model whose perplexity barely moved and whose KL is small kept its
   general language modelling; a large jump is a red flag worth a real benchmark run.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftrl.eval.benchmarks.common import LookupPolicy, ResultLog, batched, mean, text_of, write_summary
from ftrl.jsonl import DataError, read_records
from ftrl.rollout.policy import Message, Policy
from ftrl.runtime.protocol import ToolRunner

LETTERS = "ABCD"
DRIFT_SAMPLE = Path(__file__).with_name("drift_sample.txt")

# ------------------------------------------------------------------------------------------------ extraction


def extract_choice(text: str, letters: str = LETTERS) -> str | None:
    """The chosen option letter: the last "answer is (X)" / "answer: X", else a reply that starts with the
    letter ("B", "(B)", "B. ..."), else the first standalone option letter anywhere."""
    options = f"[{letters}]"
    stated = re.findall(rf"answer(?: is|:)\s*\(?({options})\b\)?", text, flags=re.IGNORECASE)
    if stated:
        return stated[-1].upper()
    leading = re.match(rf"\s*\(?({options})(?:[).:\s]|$)", text)
    if leading:
        return leading.group(1)
    anywhere = re.search(rf"\b({options})\b", text)
    return anywhere.group(1) if anywhere else None


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def extract_last_number(text: str) -> str | None:
    """GSM8K: the last number in the text, thousands separators removed, a trailing `.0...` dropped."""
    found = _NUMBER.findall(text)
    return _plain_number(found[-1]) if found else None


def _plain_number(number: str) -> str:
    number = number.replace(",", "")
    if "." in number:
        number = number.rstrip("0").rstrip(".")
    return number or "0"


def gsm8k_target(answer: str) -> str:
    """The gold number after `####` in a GSM8K solution."""
    return _plain_number(answer.split("####")[-1].strip())


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`), braces matched; `\\boxed 5` also accepted."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    rest = text[start:].split("{", 1)
    if len(rest) == 1 or rest[0] not in ("\\boxed", "\\fbox"):
        spaced = re.match(r"\\boxed ([^\s$]+)", text[start:])
        return spaced.group(1) if spaced else None
    depth, body = 1, rest[1]
    for index, char in enumerate(body):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            return body[:index]
    return None


def normalize_math(answer: str) -> str:
    """Hendrycks et al.'s MATH answer normalisation (`strip_string`): drop spacing/sizing macros, units, degrees,
    dollars and percents, canonicalise fractions and square roots, `0.5` -> `\\frac{1}{2}`, `a/b` -> frac."""
    text = answer.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    text = text.replace("tfrac", "frac").replace("dfrac", "frac").replace("\\left", "").replace("\\right", "")
    text = text.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "")
    if "\\text{ " in text:
        text = text.split("\\text{ ")[0]
    text = text.replace("\\%", "").replace("%", "")
    text = text.replace(" .", " 0.").replace("{.", "{0.")
    if text.startswith("."):
        text = "0" + text
    parts = text.split("=")
    if len(parts) == 2 and len(parts[0]) <= 2:
        text = parts[1]
    text = re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", text)
    text = text.replace(" ", "")
    text = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", text)
    text = re.sub(r"\\frac(\d)\{", r"\\frac{\1}{", text)
    text = re.sub(r"\\frac\{([^{}]*)\}(\d)", r"\\frac{\1}{\2}", text)
    if text == "0.5":
        text = "\\frac{1}{2}"
    simple = re.fullmatch(r"(-?\d+)/(\d+)", text)
    if simple:
        text = f"\\frac{{{simple.group(1)}}}{{{simple.group(2)}}}"
    return text


def math_equal(predicted: str | None, gold: str) -> bool:
    return predicted is not None and normalize_math(predicted) == normalize_math(gold)


def extract_bbh(text: str) -> str:
    """BBH chain-of-thought answer: the rest of the line after the last "answer is", one final period dropped;
    a reply without that phrase is compared whole."""
    at = text.lower().rfind("answer is")
    if at < 0:
        return text.strip()
    answer = text[at + len("answer is") :].split("\n", 1)[0].strip()
    return answer[:-1].strip() if answer.endswith(".") else answer


def extract_code(text: str) -> str:
    """The first fenced code block of a reply (```python or ```), else the whole reply."""
    block = re.search(r"```(?:python|py)?\s*\n(.*?)```", text, flags=re.DOTALL)
    return block.group(1) if block else text


# ---------------------------------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class GeneralTask:
    """One suite: the data fields it needs, its prompt, its gold reply (for the oracle) and its scorer.

    `score(row, reply_text, runtime)` returns 0.0 or 1.0; only code tasks use the runtime.
    """

    name: str
    fields: tuple[str, ...]
    prompt: Callable[[dict[str, Any]], str]
    gold_reply: Callable[[dict[str, Any]], str]
    score: Callable[[dict[str, Any], str, ToolRunner | None], float]
    needs_runtime: bool = False


def _mmlu_gold(row: dict[str, Any]) -> str:
    answer = row["answer"]
    return LETTERS[answer] if isinstance(answer, int) else str(answer).strip().upper()


def _mmlu_prompt(row: dict[str, Any]) -> str:
    subject = str(row.get("subject", "")).replace("_", " ")
    about = f" about {subject}" if subject else ""
    options = "\n".join(f"{letter}. {choice}" for letter, choice in zip(LETTERS, row["choices"], strict=False))
    return (
        f"The following is a multiple choice question{about}.\n\n{row['question']}\n{options}\n\n"
        "Answer with the letter of the correct option, in the form 'The answer is (X)'."
    )


def _math_gold(row: dict[str, Any]) -> str:
    return str(row["answer"]) if "answer" in row else str(last_boxed(row["solution"]))


def _humaneval_program(row: dict[str, Any], reply: str) -> str:
    code = extract_code(reply)
    if not re.search(rf"def\s+{re.escape(row['entry_point'])}\s*\(", code):
        code = row["prompt"] + code
    else:
        imports = [line for line in row["prompt"].splitlines() if line.startswith(("import ", "from "))]
        code = "\n".join(imports) + "\n" + code
    return f"{code}\n\n{row['test']}\n\ncheck({row['entry_point']})\n"


def _mbpp_program(row: dict[str, Any], reply: str) -> str:
    tests = "\n".join(row["test_list"])
    return f"{row.get('test_setup_code') or ''}\n{extract_code(reply)}\n\n{tests}\n"


def _mbpp_prompt(row: dict[str, Any]) -> str:
    tests = "\n".join(row["test_list"])
    return (
        f"You are an expert Python programmer, and here is your task: {row.get('text') or row.get('prompt')} "
        f"Your code should pass these tests:\n\n{tests}\n\nWrite the code in a ```python block."
    )


TASKS: dict[str, GeneralTask] = {
    "mmlu": GeneralTask(
        "mmlu",
        ("question", "choices", "answer"),
        _mmlu_prompt,
        lambda row: f"The answer is ({_mmlu_gold(row)}).",
        lambda row, text, _: float(extract_choice(text) == _mmlu_gold(row)),
    ),
    "bbh": GeneralTask(
        "bbh",
        ("input", "target"),
        lambda row: f"{row['input']}\n\nThink step by step, then finish with 'So the answer is <answer>.'",
        lambda row: f"So the answer is {row['target']}.",
        lambda row, text, _: float(extract_bbh(text) == str(row["target"]).strip()),
    ),
    "gsm8k": GeneralTask(
        "gsm8k",
        ("question", "answer"),
        lambda row: f"Question: {row['question']}\nSolve it step by step and end with 'The answer is <number>'.",
        lambda row: f"The answer is {gsm8k_target(row['answer'])}",
        lambda row, text, _: float(extract_last_number(text) == gsm8k_target(row["answer"])),
    ),
    "math": GeneralTask(
        "math",
        ("problem",),
        lambda row: f"{row['problem']}\n\nSolve the problem and put the final answer in \\boxed{{}}.",
        lambda row: f"The final answer is \\boxed{{{_math_gold(row)}}}.",
        lambda row, text, _: float(math_equal(last_boxed(text), _math_gold(row))),
    ),
    "humaneval": GeneralTask(
        "humaneval",
        ("prompt", "test", "entry_point"),
        lambda row: (
            f"Complete the following Python function. Reply with the whole function in a ```python block.\n\n"
            f"```python\n{row['prompt']}```"
        ),
        lambda row: f"```python\n{row['prompt']}{row['canonical_solution']}```",
        lambda row, text, runtime: run_program(runtime, _humaneval_program(row, text)),
        needs_runtime=True,
    ),
    "mbpp": GeneralTask(
        "mbpp",
        ("test_list",),
        _mbpp_prompt,
        lambda row: f"```python\n{row['code']}\n```",
        lambda row, text, runtime: run_program(runtime, _mbpp_program(row, text)),
        needs_runtime=True,
    ),
}

_RUNNER = (
    "def run_program():\n"
    "    namespace = {{'__name__': '__ftrl_program__'}}\n"
    "    exec(compile(PROGRAM, '<program>', 'exec'), namespace)\n"
    "    return 'passed'\n\n"
    "PROGRAM = {program!r}\n"
)
PASSED = "passed"


def run_program(runtime: ToolRunner | None, program: str) -> float:
    """1.0 when `program` (solution + its tests) runs to the end without an exception in the isolated runtime
    (its timeout and resource limits apply); never executed in this process."""
    if runtime is None:
        raise ValueError("code tasks run the generated program in a ToolRuntime, and none was given")
    with runtime.episode(codes={"run_program": _RUNNER.format(program=program)}) as episode:
        return float(episode.call("run_program", {}) == PASSED)


# ------------------------------------------------------------------------------------------------------ runs


def load_rows(path: str | Path, task: GeneralTask, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of a JSONL (or JSON list) file, checked for the fields the task needs."""
    file = Path(path)
    records = read_records(file, task.name)
    records = records[:limit] if limit is not None else records
    for line, row in records:
        missing = [name for name in task.fields if name not in row]
        if missing:
            raise DataError(file, line, missing[0], f"missing, needed by {task.name} (which needs {task.fields})")
    return [row for _, row in records]


def conversation(task: GeneralTask, row: dict[str, Any]) -> list[Message]:
    return [{"role": "user", "content": task.prompt(row)}]


def run_general(
    task_name: str,
    rows: Sequence[dict[str, Any]],
    policy: Policy,
    out_dir: str | Path,
    runtime: ToolRunner | None = None,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Answer and score every row not yet in `out_dir/results.jsonl`; accuracy (pass@1 for code) in percent."""
    task = TASKS[task_name]
    if task.needs_runtime and runtime is None:
        raise ValueError(f"{task_name} executes code and needs a ToolRuntime")
    with ResultLog(out_dir) as log:
        keyed = [(f"{task_name}/{row.get('task_id', index)}", row) for index, row in enumerate(rows)]
        pending = [(key, row) for key, row in keyed if not log.done(key)]
        log.expect(len(pending), task_name)
        for batch in batched(pending, batch_size):
            replies = policy.generate([conversation(task, row) for _, row in batch], None)
            for (key, row), reply in zip(batch, replies, strict=False):
                text = text_of(reply)
                log.add({"key": key, "task": task_name, "response": text, "correct": task.score(row, text, runtime)})
        rows_done = [log.rows[key] for key, _ in keyed if key in log.rows]
    summary = {"benchmark": task_name, "items": len(rows_done), "score": 100 * mean(r["correct"] for r in rows_done)}
    metric = "pass@1 (%)" if task.needs_runtime else "accuracy (%)"
    write_summary(
        out_dir, summary, [["task", "items", metric], [task_name, summary["items"], summary["score"]]], task_name
    )
    return summary


def gold_policy(task_name: str, rows: Sequence[dict[str, Any]]) -> LookupPolicy:
    """Replies with each row's gold answer in the expected form; scores 100 when prompts, extraction and (for
    code) runtime execution all work."""
    task, policy = TASKS[task_name], LookupPolicy()
    for row in rows:
        policy.add(conversation(task, row), task.gold_reply(row))
    return policy


# ------------------------------------------------------------------------------------------------- lm-eval

LM_EVAL_TASKS = {
    "mmlu": "mmlu",
    "bbh": "bbh_cot_fewshot",
    "gsm8k": "gsm8k",
    "math": "minerva_math",
    "humaneval": "humaneval",
    "mbpp": "mbpp",
}
CODE_TASKS = ("humaneval", "mbpp")


def lm_eval_available() -> bool:
    return importlib.util.find_spec("lm_eval") is not None


def lm_eval_command(model_path: str, tasks: Sequence[str], out_dir: str | Path, batch_size: int = 8) -> list[str]:
    """The `lm_eval` command line for our task names (code tasks add the harness's unsafe-code confirmation)."""
    command = [
        "lm_eval",
        "--model",
        "hf",
        "--model_args",
        f"pretrained={model_path}",
        "--tasks",
        ",".join(LM_EVAL_TASKS[name] for name in tasks),
        "--batch_size",
        str(batch_size),
        "--output_path",
        str(out_dir),
    ]
    if any(name in CODE_TASKS for name in tasks):
        command.append("--confirm_run_unsafe_code")
    return command


def run_lm_eval(model_path: str, tasks: Sequence[str], batch_size: int = 8) -> dict[str, Any] | None:
    """`lm_eval.simple_evaluate` on our task names; None when lm-eval is not installed."""
    if not lm_eval_available():
        return None
    import lm_eval

    results = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={model_path}",
        tasks=[LM_EVAL_TASKS[name] for name in tasks],
        batch_size=batch_size,
        confirm_run_unsafe_code=any(name in CODE_TASKS for name in tasks),
    )
    return results["results"] if results else None


# --------------------------------------------------------------------------------------------------- drift


def drift(tuned: Any, base: Any, tokenizer: Any, texts: Sequence[str] | None = None, max_tokens: int = 512) -> dict:
    """Perplexity of both models and mean per-token KL(tuned || base) over `texts` (default: the bundled sample).

    Both models must share `tokenizer`'s vocabulary (a fine-tune of the base does). Token-weighted over all
    predicted positions of all paragraphs.
    """
    import torch

    texts = list(texts) if texts is not None else drift_paragraphs()
    nll = {"tuned": 0.0, "base": 0.0}
    kl_sum, count = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt").input_ids[:, :max_tokens]
            if ids.shape[1] < 2:
                continue
            targets = ids[:, 1:]
            log_probs = {}
            for name, model in (("tuned", tuned), ("base", base)):
                logits = model(ids.to(model.device)).logits[:, :-1].float().cpu()
                log_probs[name] = torch.log_softmax(logits, dim=-1)
                nll[name] -= log_probs[name].gather(-1, targets.unsqueeze(-1)).sum().item()
            tuned_lp, base_lp = log_probs["tuned"], log_probs["base"]
            kl_sum += (tuned_lp.exp() * (tuned_lp - base_lp)).sum().item()
            count += targets.numel()
    if count == 0:
        raise ValueError("no text long enough to score")
    return {
        "tokens": count,
        "ppl_tuned": float(torch.exp(torch.tensor(nll["tuned"] / count))),
        "ppl_base": float(torch.exp(torch.tensor(nll["base"] / count))),
        "kl_tuned_base": kl_sum / count,
    }


def drift_paragraphs() -> list[str]:
    """The bundled regression text: paragraphs separated by blank lines."""
    return [p.strip() for p in DRIFT_SAMPLE.read_text(encoding="utf-8").split("\n\n") if p.strip()]


def run_drift(tuned_spec: str, base_spec: str, out_dir: str | Path) -> dict[str, Any]:
    """Load both models (local folders or `embedded`) on CPU, measure drift, write summary.json/summary.md."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftrl.models import resolve_model

    tuned_dir, base_dir = resolve_model(tuned_spec), resolve_model(base_spec)
    tokenizer = AutoTokenizer.from_pretrained(tuned_dir)
    tuned = AutoModelForCausalLM.from_pretrained(tuned_dir).eval()
    base = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    if tuned.config.vocab_size != base.config.vocab_size:
        raise ValueError("tuned and base models have different vocabularies; drift needs a shared tokenizer")
    summary = {"benchmark": "drift", "tuned": tuned_spec, "base": base_spec, **drift(tuned, base, tokenizer)}
    table = [
        ["model", "perplexity"],
        ["base", summary["ppl_base"]],
        ["tuned", summary["ppl_tuned"]],
        ["KL(tuned ‖ base) per token, nats", f"{summary['kl_tuned_base']:.5f}"],
    ]
    write_summary(out_dir, summary, table, "Regression drift")
    return summary
