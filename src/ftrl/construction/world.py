"""A seeded synthetic world of fictional entities, so that no model can answer a question from memory.

Ten domains (companies, people, cities, ...) each have typed attributes (counts, measures, years, dates,
categories, codes) and relations to other domains (`ceo`, `born_in`, `capital`, ...), so multi-hop chains of
any length exist even inside a single domain (`mentor`, `twin_city`, `rival`, ...). The world depends only on
its seed; environments pick their facts from it with their own per-index random generator.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any


@dataclass(frozen=True)
class Attribute:
    """A typed fact of an entity; `kind` decides how it is drawn, shown and aggregated."""

    name: str
    phrase: str  # "the founding year" -> "What is the founding year of X?"
    kind: str  # count | measure | year | date | category | code
    low: float = 0
    high: float = 0
    choices: tuple[str, ...] = ()
    unit: str = ""


@dataclass(frozen=True)
class Relation:
    """A link from an entity to an entity of `target` domain (`the CEO of X`)."""

    name: str
    phrase: str
    target: str


@dataclass(frozen=True)
class DomainSpec:
    name: str
    noun: str  # "company" -> parameter `company_name`, tool `get_company_ceo`
    attributes: tuple[Attribute, ...]
    relations: tuple[Relation, ...]

    @property
    def fields(self) -> tuple[Attribute | Relation, ...]:
        """Every field a tool can return: attributes first, then relations."""
        return (*self.attributes, *self.relations)


def _count(name: str, phrase: str, low: int, high: int, unit: str = "") -> Attribute:
    return Attribute(name, phrase, "count", low, high, unit=unit)


def _measure(name: str, phrase: str, low: float, high: float, unit: str) -> Attribute:
    return Attribute(name, phrase, "measure", low, high, unit=unit)


def _year(name: str, phrase: str, low: int, high: int) -> Attribute:
    return Attribute(name, phrase, "year", low, high)


def _date(name: str, phrase: str, low: int, high: int) -> Attribute:
    return Attribute(name, phrase, "date", low, high)


def _category(name: str, phrase: str, *choices: str) -> Attribute:
    return Attribute(name, phrase, "category", choices=choices)


def _code(name: str, phrase: str) -> Attribute:
    return Attribute(name, phrase, "code")


DOMAINS: tuple[DomainSpec, ...] = (
    DomainSpec(
        "company",
        "company",
        (
            _date("incorporation_date", "the incorporation date", 1850, 2015),
            _count("employees", "the number of employees", 1200, 250000),
            _measure("revenue_musd", "the annual revenue in million US dollars", 15, 9000, "million USD"),
            _category(
                "sector",
                "the industry sector",
                "aerospace",
                "biotechnology",
                "logistics",
                "textiles",
                "renewable energy",
                "shipbuilding",
                "semiconductors",
                "agritech",
                "cosmetics",
            ),
            _code("ticker", "the stock ticker symbol"),
        ),
        (
            Relation("ceo", "the CEO", "person"),
            Relation("headquarters", "the headquarters city", "city"),
            Relation("parent_company", "the parent company", "company"),
        ),
    ),
    DomainSpec(
        "person",
        "person",
        (
            _year("birth_year", "the birth year", 1925, 2001),
            _count("height_cm", "the height in centimetres", 151, 209, "cm"),
            _category(
                "profession",
                "the profession",
                "architect",
                "cartographer",
                "geologist",
                "violinist",
                "glassblower",
                "astronomer",
                "diplomat",
                "botanist",
                "sculptor",
            ),
            _code("registry_id", "the civil registry identifier"),
        ),
        (
            Relation("born_in", "the birthplace", "city"),
            Relation("employer", "the employer", "company"),
            Relation("mentor", "the mentor", "person"),
            Relation("citizen_of", "the country of citizenship", "country"),
        ),
    ),
    DomainSpec(
        "city",
        "city",
        (
            _count("population", "the population", 21000, 9400000),
            _count("elevation_m", "the elevation in metres", 120, 3900, "m"),
            _year("founded_year", "the founding year", 820, 1950),
            _measure("area_km2", "the area in square kilometres", 30, 2600, "km2"),
            _category(
                "climate",
                "the climate classification",
                "oceanic",
                "semi-arid",
                "subarctic",
                "monsoon",
                "mediterranean",
                "humid continental",
                "tropical savanna",
                "alpine tundra",
            ),
        ),
        (
            Relation("mayor", "the mayor", "person"),
            Relation("country", "the country", "country"),
            Relation("river", "the river", "river"),
            Relation("twin_city", "the twin city", "city"),
        ),
    ),
    DomainSpec(
        "country",
        "country",
        (
            _count("population", "the population", 310000, 190000000),
            _count("area_km2", "the area in square kilometres", 1400, 2900000, "km2"),
            _year("independence_year", "the year of independence", 1801, 1999),
            _code("currency", "the currency"),
        ),
        (
            Relation("capital", "the capital", "city"),
            Relation("head_of_state", "the head of state", "person"),
            Relation("neighbor", "the largest neighbouring country", "country"),
        ),
    ),
    DomainSpec(
        "species",
        "species",
        (
            _count("mass_g", "the average adult mass in grams", 140, 95000, "g"),
            _year("discovery_year", "the year of scientific description", 1758, 2020),
            _category(
                "diet",
                "the diet",
                "herbivore",
                "insectivore",
                "piscivore",
                "omnivore",
                "nectarivore",
                "carnivore",
                "filter feeder",
            ),
            _category(
                "conservation_status",
                "the conservation status",
                "least concern",
                "near threatened",
                "vulnerable",
                "endangered",
                "critically endangered",
            ),
        ),
        (
            Relation("discovered_by", "the discoverer", "person"),
            Relation("native_to", "the native country", "country"),
            Relation("habitat_river", "the river habitat", "river"),
        ),
    ),
    DomainSpec(
        "spacecraft",
        "spacecraft",
        (
            _date("launch_date", "the launch date", 1961, 2031),
            _count("mass_kg", "the launch mass in kilograms", 520, 91000, "kg"),
            _count("orbit_altitude_km", "the orbital altitude in kilometres", 210, 39000, "km"),
            _category(
                "mission_type",
                "the mission type",
                "lunar orbiter",
                "cargo resupply",
                "deep space probe",
                "weather observation",
                "crewed transport",
                "asteroid sample return",
            ),
        ),
        (
            Relation("manufacturer", "the manufacturer", "company"),
            Relation("launch_site", "the launch site city", "city"),
            Relation("commander", "the mission commander", "person"),
        ),
    ),
    DomainSpec(
        "book",
        "book",
        (
            _year("publication_year", "the publication year", 1790, 2024),
            _count("page_count", "the number of pages", 118, 1480),
            _count("copies_sold", "the number of copies sold", 12000, 8800000),
            _category(
                "genre",
                "the genre",
                "historical fiction",
                "hard science fiction",
                "gothic romance",
                "travel memoir",
                "political thriller",
                "epic fantasy",
                "cosy mystery",
            ),
        ),
        (
            Relation("author", "the author", "person"),
            Relation("setting", "the setting city", "city"),
            Relation("publisher", "the publisher", "company"),
            Relation("sequel", "the sequel", "book"),
        ),
    ),
    DomainSpec(
        "river",
        "river",
        (
            _count("length_km", "the length in kilometres", 42, 6100, "km"),
            _measure("discharge_m3s", "the mean discharge in cubic metres per second", 12, 9800, "m3/s"),
            _count("basin_area_km2", "the drainage basin area in square kilometres", 1500, 990000, "km2"),
        ),
        (
            Relation("flows_through", "the main basin country", "country"),
            Relation("mouth_city", "the mouth city", "city"),
            Relation("tributary_of", "the downstream river", "river"),
        ),
    ),
    DomainSpec(
        "sports_club",
        "club",
        (
            _year("founded_year", "the founding year", 1862, 2012),
            _count("stadium_capacity", "the stadium capacity", 4800, 99000),
            _measure("budget_musd", "the annual budget in million US dollars", 3, 780, "million USD"),
            _category(
                "sport",
                "the sport",
                "hurling",
                "water polo",
                "bandy",
                "korfball",
                "rugby league",
                "field hockey",
                "volleyball",
                "handball",
            ),
        ),
        (
            Relation("home_city", "the home city", "city"),
            Relation("coach", "the head coach", "person"),
            Relation("owner", "the owning company", "company"),
            Relation("rival", "the main rival club", "sports_club"),
        ),
    ),
    DomainSpec(
        "mountain",
        "mountain",
        (
            _count("height_m", "the height in metres", 1040, 8790, "m"),
            _year("first_ascent_year", "the year of the first ascent", 1786, 2019),
            _count("prominence_m", "the topographic prominence in metres", 310, 4800, "m"),
        ),
        (
            Relation("located_in", "the host country", "country"),
            Relation("first_climber", "the first climber", "person"),
            Relation("nearest_city", "the nearest city", "city"),
        ),
    ),
)

DOMAIN_NAMES: tuple[str, ...] = tuple(spec.name for spec in DOMAINS)

_ONSETS = (
    "b",
    "br",
    "d",
    "dr",
    "f",
    "g",
    "gr",
    "k",
    "kr",
    "l",
    "m",
    "n",
    "p",
    "qu",
    "r",
    "s",
    "st",
    "t",
    "th",
    "tr",
    "v",
    "vr",
    "z",
    "h",
    "j",
    "sk",
)
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ei", "ou", "y")
_CODAS = ("", "", "", "", "n", "r", "l", "s", "th", "x", "nd", "m")
_STYLE = {
    "company": ("{A} {suffix}", ("Dynamics", "Holdings", "Industries", "Works", "Systems", "Collective", "Foundry")),
    "person": ("{A} {B}", ()),
    "city": ("{A}{suffix}", ("haven", "mere", "stad", "vale", "port", "wick", "grad", "ford")),
    "country": ("{A}{suffix}", ("ia", "land", "ovia", "aria", "estan", "onia")),
    "species": ("{A} {b}", ()),
    "spacecraft": ("{A} {suffix}", ("Pathfinder", "Voyager", "Lancer", "Herald", "Seeker", "Beacon")),
    "book": ("The {suffix} of {A}", ("Lanterns", "Orchards", "Tides", "Ashes", "Bells", "Mirrors", "Glaciers")),
    "river": ("{A} River", ()),
    "sports_club": ("{A} {suffix}", ("Comets", "Harriers", "Wanderers", "Titans", "Kestrels", "Mariners")),
    "mountain": ("Mount {A}", ()),
}


def _word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables))


@dataclass
class World:
    """All entities: `entities[domain][name] = {field: value}`; relation fields hold entity names."""

    seed: int
    entities: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    _names: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def spec(self, domain: str) -> DomainSpec:
        return _SPECS[domain]

    def names(self, domain: str) -> list[str]:
        """Entity names of a domain in creation order (do not modify the returned list)."""
        if domain not in self._names:
            self._names[domain] = list(self.entities[domain])
        return self._names[domain]


_SPECS = {spec.name: spec for spec in DOMAINS}


def attribute_value(attribute: Attribute, rng: random.Random) -> Any:
    """Draw one value; numbers avoid short strings that would match unrelated text by accident."""
    if attribute.kind == "count":
        return rng.randint(int(attribute.low), int(attribute.high))
    if attribute.kind == "measure":
        return round(rng.uniform(attribute.low, attribute.high), 1)
    if attribute.kind == "year":
        return rng.randint(int(attribute.low), int(attribute.high))
    if attribute.kind == "date":
        return (
            f"{rng.randint(int(attribute.low), int(attribute.high))}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        )
    if attribute.kind == "category":
        return rng.choice(attribute.choices)
    if attribute.name == "currency":
        return f"{_word(rng, 2).capitalize()} {rng.choice(('crown', 'mark', 'dinar', 'florin', 'real'))}"
    return "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(3)) + str(rng.randint(1000, 9999))


def _entity_name(domain: str, rng: random.Random) -> str:
    pattern, suffixes = _STYLE[domain]
    return pattern.format(
        A=_word(rng, rng.choice((2, 2, 3))).capitalize(),
        B=_word(rng, 2).capitalize(),
        b=_word(rng, 2),
        suffix=rng.choice(suffixes) if suffixes else "",
    )


@lru_cache(maxsize=8)
def make_world(seed: int, size: int = 240) -> World:
    """The world of a seed: `size` entities per domain with every attribute and relation filled."""
    rng = random.Random(f"ftrl-world:{seed}")
    world = World(seed)
    used: set[str] = set()
    for spec in DOMAINS:
        table: dict[str, dict[str, Any]] = {}
        while len(table) < size:
            name = _entity_name(spec.name, rng)
            if name.lower() in used:
                continue
            used.add(name.lower())
            table[name] = {a.name: attribute_value(a, rng) for a in spec.attributes}
        world.entities[spec.name] = table
    for spec in DOMAINS:
        for name, record in world.entities[spec.name].items():
            for relation in spec.relations:
                targets = world.names(relation.target)
                target = rng.choice(targets)
                while target == name:
                    target = rng.choice(targets)
                record[relation.name] = target
    return world
