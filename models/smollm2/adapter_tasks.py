"""The two tasks the real model's LoRA adapters learn, as seeded generators of chat turns.

Both answer in a fixed format the base model does not keep to on its own:

- `json-extract`: a sentence about a person -> `{"name": ..., "age": ..., "city": ...}`.
- `sql`: a request about a table -> one SQL statement.

Held-out examples draw names, cities and tables that training never shows, so the held-out
loss measures the format learned, not memorised values.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass

FIRST_NAMES = (
    "Alice", "Bruno", "Chen", "Dalia", "Emeka", "Fatima", "Goran", "Hana", "Ivan", "Jun",
    "Kofi", "Lena", "Mateo", "Nadia", "Oscar", "Priya", "Quinn", "Rosa", "Sven", "Tariq",
    "Uma", "Viktor", "Wen", "Ximena", "Yusuf", "Zara", "Amara", "Boris", "Clara", "Diego",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Okafor", "Novak", "Garcia", "Tanaka", "Muller", "Rossi", "Kowalski", "Haddad",
    "Silva", "Petrov", "Nguyen", "Jensen", "Costa", "Ibrahim", "Moreau", "Larsen", "Sato",
)  # fmt: skip
CITIES = (
    "Paris", "Lagos", "Osaka", "Lima", "Oslo", "Cairo", "Denver", "Porto", "Seoul", "Quito",
    "Hanoi", "Perth", "Zurich", "Dublin", "Nairobi", "Austin", "Krakow", "Bogota", "Tunis",
    "Leeds", "Kyoto", "Malmo", "Accra", "Hobart",
)  # fmt: skip
PERSON_TEMPLATES = (
    "{name} is {age} years old and lives in {city}.",
    "Meet {name}, a {age}-year-old from {city}.",
    "{name} ({age}) moved to {city} last spring.",
    "Our new colleague {name} is {age} and is based in {city}.",
    "Living in {city}, {name} turned {age} this year.",
    "At {age}, {name} runs a small bakery in {city}.",
)
TABLES = {
    "users": (("name", "email", "country"), ("age", "logins")),
    "orders": (("status", "customer"), ("total", "quantity")),
    "products": (("name", "category"), ("price", "stock")),
    "employees": (("name", "department"), ("salary", "age")),
    "books": (("title", "author"), ("pages", "year")),
    "movies": (("title", "genre"), ("rating", "year")),
    "cars": (("make", "color"), ("price", "mileage")),
    "students": (("name", "major"), ("grade", "age")),
    "flights": (("origin", "airline"), ("seats", "duration")),
    "songs": (("title", "artist"), ("plays", "length")),
}
VALUES = ("red", "active", "Berlin", "science", "drama", "Tesla", "open", "blue", "jazz")
HELDOUT_TABLES = ("movies", "cars", "students", "flights", "songs")


@dataclass(frozen=True)
class ChatExample:
    user: str
    answer: str


def _split(items: tuple[str, ...], heldout: bool, share: float = 0.25) -> tuple[str, ...]:
    cut = len(items) - max(1, int(len(items) * share))
    return items[cut:] if heldout else items[:cut]


def person_example(rng: random.Random, heldout: bool) -> ChatExample:
    first = rng.choice(_split(FIRST_NAMES, heldout))
    name = f"{first} {rng.choice(LAST_NAMES)}"
    age = rng.randint(18, 90)
    city = rng.choice(_split(CITIES, heldout))
    sentence = rng.choice(PERSON_TEMPLATES).format(name=name, age=age, city=city)
    answer = json.dumps({"name": name, "age": age, "city": city})
    return ChatExample(f"Extract the person as JSON: {sentence}", answer)


def sql_example(rng: random.Random, heldout: bool) -> ChatExample:
    names = [t for t in TABLES if (t in HELDOUT_TABLES) == heldout]
    table = rng.choice(names)
    text_cols, num_cols = TABLES[table]
    col, num = rng.choice(text_cols), rng.choice(num_cols)
    n, k, value = rng.randint(2, 500), rng.randint(2, 10), rng.choice(VALUES)
    request, query = rng.choice(
        (
            (f"list the {col} of all {table}", f"SELECT {col} FROM {table};"),
            (
                f"count the {table} whose {num} is above {n}",
                f"SELECT COUNT(*) FROM {table} WHERE {num} > {n};",
            ),
            (
                f"show every row of {table} where {col} is {value}",
                f"SELECT * FROM {table} WHERE {col} = '{value}';",
            ),
            (
                f"the {k} {table} with the highest {num}",
                f"SELECT * FROM {table} ORDER BY {num} DESC LIMIT {k};",
            ),
            (
                f"the average {num} of {table} per {col}",
                f"SELECT {col}, AVG({num}) FROM {table} GROUP BY {col};",
            ),
        )
    )
    return ChatExample(f"Write a SQL query for: {request}", query)


TASKS: dict[str, Callable[[random.Random, bool], ChatExample]] = {
    "json-extract": person_example,
    "sql": sql_example,
}


def examples(task: str, count: int, seed: int, heldout: bool) -> list[ChatExample]:
    rng = random.Random(f"{task}-{seed}-{heldout}")
    return [TASKS[task](rng, heldout) for _ in range(count)]
