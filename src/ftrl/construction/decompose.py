"""Stage 1, scenario decomposition (procedural): draw a question and its sub-questions from the synthetic world.

Single-hop asks one fact; parallel single-hop asks independent facts, usually aggregated (sum, difference,
comparison, yes/no); multi-hop walks a chain of relations where every step needs the previous answer;
parallel multi-hop runs several chains and aggregates their ends. Gold sub-answers are read off the world, and
the final answer is computed here by `final_answer`, which deployment reuses to check the gold trajectory.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ftrl.construction.base import Draft, Rejected, SubQuestion, stage_rng
from ftrl.construction.config import Difficulty
from ftrl.construction.verify import final_answer
from ftrl.construction.world import DOMAIN_NAMES, Attribute, DomainSpec, World

#: Aggregations allowed per attribute kind (the first list applies to 2 operands, wider ones drop difference).
AGGREGATIONS = {
    "count": ("sum", "difference", "yes_no", "compare", "list"),
    "measure": ("sum", "difference", "yes_no", "compare", "list"),
    "year": ("difference", "yes_no", "compare", "list"),
    "date": ("yes_no", "compare", "list"),
    "category": ("list",),
    "code": ("list",),
}


@dataclass
class _Step:
    domain: str
    entity: str
    field: str
    answer: str
    kind: str  # relation or attribute kind
    phrase: str


def allowed_domains(domains: tuple[str, ...] | None, exclude: tuple[str, ...]) -> tuple[str, ...]:
    """Domains a build may use; unknown names are an error rather than a silently empty world."""
    unknown = [d for d in (*(domains or ()), *exclude) if d not in DOMAIN_NAMES]
    if unknown:
        raise ValueError(f"unknown domains {unknown}; known: {', '.join(DOMAIN_NAMES)}")
    chosen = tuple(d for d in (domains or DOMAIN_NAMES) if d not in exclude)
    if not chosen:
        raise ValueError("no domain left after exclusions")
    return chosen


class ProceduralDecompose:
    """Writes `question`, `sub_questions`, `aggregation` and `answer` of a draft from the world."""

    name = "decompose"

    def __init__(self, world: World, domains: tuple[str, ...], difficulty: Difficulty):
        self.world, self.domains, self.difficulty = world, domains, difficulty

    def run(self, draft: Draft) -> Draft:
        rng = stage_rng(draft, self.name)
        make = {
            "single_hop": self._single_hop,
            "parallel_single_hop": self._parallel_single_hop,
            "multi_hop": self._multi_hop,
            "parallel_multi_hop": self._parallel_multi_hop,
        }[draft.scenario]
        for _ in range(50):
            if make(draft, rng) and _distinct_answers(draft):
                draft.domain_world = "+".join(sorted({s.facts["domain"] for s in draft.sub_questions}))
                draft.answer = final_answer(draft) or ""
                return draft
        raise Rejected(self.name, f"no {draft.scenario} question with distinct answers in domains {self.domains}")

    # -- building blocks -------------------------------------------------------------------------------------
    def _spec(self, domain: str) -> DomainSpec:
        return self.world.spec(domain)

    def _relations(self, domain: str) -> list:
        return [r for r in self._spec(domain).relations if r.target in self.domains]

    def _attribute_step(self, domain: str, entity: str, attribute: Attribute) -> _Step:
        value = self.world.entities[domain][entity][attribute.name]
        return _Step(domain, entity, attribute.name, str(value), attribute.kind, attribute.phrase)

    def _chain(self, rng: random.Random, relations: int, end_attribute: bool) -> list[_Step] | None:
        """A walk of `relations` hops from a random entity, optionally ending in an attribute; no entity twice."""
        domain = rng.choice(self.domains)
        entity = rng.choice(self.world.names(domain))
        seen = {entity}
        steps: list[_Step] = []
        for _ in range(relations):
            options = self._relations(domain)
            # avoid "the mentor of the mentor of ..." unless the domains allow nothing else
            options = [r for r in options if not steps or r.name != steps[-1].field] or options
            if not options:
                return None
            relation = rng.choice(options)
            target = self.world.entities[domain][entity][relation.name]
            if target in seen:
                return None
            steps.append(_Step(domain, entity, relation.name, target, "relation", relation.phrase))
            domain, entity = relation.target, target
            seen.add(entity)
        if end_attribute:
            steps.append(self._attribute_step(domain, entity, rng.choice(self._spec(domain).attributes)))
        return steps

    def _emit(self, draft: Draft, chains: list[list[_Step]]) -> None:
        """Turn chains of steps into sub-questions; each step depends on the step before it in its chain."""
        draft.sub_questions = []
        for chain in chains:
            for position, step in enumerate(chain):
                depends = [len(draft.sub_questions) - 1] if position else []
                text = f"{_ask(step)} {step.phrase} of {step.entity}?"
                facts = {"domain": step.domain, "entity": step.entity, "field": step.field, "kind": step.kind}
                draft.sub_questions.append(SubQuestion(text, step.answer, depends, facts))

    # -- scenarios -------------------------------------------------------------------------------------------
    def _single_hop(self, draft: Draft, rng: random.Random) -> bool:
        chain = self._chain(rng, 1, False) if rng.random() < 0.3 else self._chain(rng, 0, True)
        if chain is None:
            return False
        self._emit(draft, [chain])
        draft.aggregation = "last"
        draft.question = draft.sub_questions[0].text
        return True

    def _multi_hop(self, draft: Draft, rng: random.Random) -> bool:
        hops = rng.randint(max(2, self.difficulty.min_hops), max(2, self.difficulty.max_hops))
        end_attribute = rng.random() < 0.6
        chain = self._chain(rng, hops - 1 if end_attribute else hops, end_attribute)
        if chain is None:
            return False
        self._emit(draft, [chain])
        draft.aggregation = "last"
        draft.question = f"{_ask(chain[-1])} {_nested(chain)}?"
        return True

    def _parallel_single_hop(self, draft: Draft, rng: random.Random) -> bool:
        width = rng.randint(self.difficulty.min_width, self.difficulty.max_width)
        if rng.random() < 0.65:
            domain = rng.choice(self.domains)
            attribute = rng.choice(self._spec(domain).attributes)
            entities = rng.sample(self.world.names(domain), width)
            chains: list[list[_Step] | None] = [[self._attribute_step(domain, e, attribute)] for e in entities]
        else:
            chains = [self._chain(rng, 0, True) for _ in range(width)]
        return self._aggregate(draft, rng, chains)

    def _parallel_multi_hop(self, draft: Draft, rng: random.Random) -> bool:
        d = self.difficulty
        width = rng.randint(d.min_width, d.max_width)
        first = self._chain(rng, rng.randint(d.min_chain_hops, d.max_chain_hops) - 1, True)
        if first is None:
            return False
        chains: list[list[_Step] | None] = [first]
        for _ in range(width - 1):
            chains.append(self._chain_ending_like(rng, first[-1]))
        return self._aggregate(draft, rng, chains)

    def _chain_ending_like(self, rng: random.Random, end: _Step) -> list[_Step] | None:
        """A chain ending in the same attribute as `end` (so the two can be aggregated), else any chain."""
        d = self.difficulty
        attribute = next(a for a in self._spec(end.domain).attributes if a.name == end.field)
        for _ in range(40):
            chain = self._chain(rng, max(1, rng.randint(d.min_chain_hops, d.max_chain_hops) - 1), False)
            if chain and chain[-1].answer in self.world.entities[end.domain] and chain[-1].answer != end.entity:
                return [*chain, self._attribute_step(end.domain, chain[-1].answer, attribute)]
        return self._chain(rng, max(1, d.min_chain_hops - 1), True)

    def _aggregate(self, draft: Draft, rng: random.Random, maybe_chains: list[list[_Step] | None]) -> bool:
        """Pick an aggregation the operands allow, write the question and remember the operands."""
        chains = [chain for chain in maybe_chains if chain is not None]
        if len(chains) < len(maybe_chains):
            return False
        ends = [chain[-1] for chain in chains]
        labels = [_subject(chain) for chain in chains]
        same = len({(e.domain, e.field) for e in ends}) == 1
        options = AGGREGATIONS[ends[0].kind] if same else ("list",)
        if len(ends) > 2:
            options = tuple(o for o in options if o in ("sum", "list"))
        aggregation = rng.choice(options)
        self._emit(draft, chains)
        draft.aggregation = aggregation
        draft.notes[self.name] = {"names": [chain[-1].entity for chain in chains], "ends": _end_indices(chains)}
        core = ends[0].phrase.removeprefix("the ")
        if aggregation == "list":
            parts = [f"{_ask(e).lower()} {_nested(chain)}" for e, chain in zip(ends, chains, strict=True)]
            draft.question = _capital(", and ".join(parts)) + "?"
        elif aggregation == "sum":
            draft.question = f"What is the combined {core} of {_join(labels)}?"
        elif aggregation == "difference":
            draft.question = f"What is the difference between the {core} of {labels[0]} and that of {labels[1]}?"
        elif aggregation == "yes_no":
            draft.question = f"Is the {core} of {labels[0]} {_more(ends[0])} than that of {labels[1]}?"
        elif aggregation == "compare":
            draft.question = f"Which has the {_more(ends[0], superlative=True)} {core}: {_join(labels, 'or')}?"
        else:
            raise Rejected(self.name, f"unknown aggregation {aggregation!r}")
        return True


def _distinct_answers(draft: Draft) -> bool:
    """No sub-answer or starting entity equals or contains another, so no output can solve the wrong one.

    A tool's output names the entity it was asked about; that entity is a starting entity or the answer of
    the sub-question it depends on, so answers must also differ from every starting entity.
    """
    starts = [s.facts["entity"] for s in draft.sub_questions if not s.depends_on]
    texts = [s.answer.lower().replace(",", "") for s in draft.sub_questions] + [e.lower() for e in set(starts)]
    return all(a not in b for i, a in enumerate(texts) for j, b in enumerate(texts) if i != j)


def _end_indices(chains: list[list[_Step]]) -> list[int]:
    ends, total = [], 0
    for chain in chains:
        total += len(chain)
        ends.append(total - 1)
    return ends


def _ask(step: _Step) -> str:
    return "Who is" if step.kind == "relation" and _is_person(step) else "What is"


def _is_person(step: _Step) -> bool:
    return step.field in (
        "ceo",
        "mentor",
        "mayor",
        "head_of_state",
        "discovered_by",
        "commander",
        "author",
        "coach",
        "first_climber",
    )


def _nested(chain: list[_Step]) -> str:
    """`the height of the birthplace of the CEO of Velmora Dynamics`."""
    return " of ".join(step.phrase for step in reversed(chain)) + f" of {chain[0].entity}"


def _subject(chain: list[_Step]) -> str:
    """How an aggregation names the entity whose attribute is compared (its name, or the nested path to it)."""
    if len(chain) == 1:
        return chain[0].entity
    return " of ".join(step.phrase for step in reversed(chain[:-1])) + f" of {chain[0].entity}"


def _more(step: _Step, superlative: bool = False) -> str:
    if step.kind in ("year", "date"):
        return "later"
    return "larger" if superlative else "greater"


def _join(labels: list[str], word: str = "and") -> str:
    return ", ".join(labels[:-1]) + f" {word} " + labels[-1]


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
