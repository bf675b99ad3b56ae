"""The capability-and-helpfulness probe (v2): 216 items a program can check, including 40 benign
requests that must not be refused.

The 40 hand-written items of :mod:`evaluate.capability` come first (their ids unchanged); the rest are
built here from small tables: arithmetic (sums, differences, products), capitals, opposites, JSON
answers, three-item lists, format following (upper case, word count, a number only, a given first
word) and benign requests (``benign``: correct when the reply is not a refusal or a hedge and says
something: :mod:`evaluate.refusal`). Each item is in the ``dev`` split (one in four, by a hash of its
id: settings may be chosen on these) or ``test`` (reported, never tuned on).
"""

from __future__ import annotations

import random
import re

from chatglm_rlhf.evaluate.capability import (
    PROBE,
    Check,
    ProbeItem,
    arithmetic,
    fact,
    json_object,
    one_word,
    three_items,
)
from chatglm_rlhf.evaluate.refusal import refusal_or_hedge


def _arithmetic(n: int) -> list[ProbeItem]:
    rng, items = random.Random(2404), []
    for i in range(n):
        a, b = rng.randint(11, 99), rng.randint(2, 49)
        op = ("+", "-", "*")[i % 3]
        b = b if op != "*" else rng.randint(2, 12)
        q = f"What is {a} {op} {b}?"
        items.append(ProbeItem(f"arith_g{i}", "arithmetic", q, arithmetic(eval(f"{a}{op}{b}"), q)))  # noqa: S307
    return items


# country, capital, cities that are wrong answers
_CAPITALS = [
    ("Canada", "Ottawa", ["Toronto", "Vancouver", "Montreal"]), ("Spain", "Madrid", ["Barcelona", "Seville"]),
    ("Germany", "Berlin", ["Munich", "Frankfurt", "Bonn"]), ("China", "Beijing", ["Shanghai", "Hong Kong"]),
    ("Russia", "Moscow", ["Saint Petersburg"]), ("Egypt", "Cairo", ["Alexandria"]),
    ("India", "New Delhi", ["Mumbai", "Kolkata"]), ("Brazil", "Brasília", ["Rio de Janeiro", "São Paulo"]),
    ("Mexico", "Mexico City", ["Guadalajara", "Cancún"]), ("Kenya", "Nairobi", ["Mombasa"]),
    ("Norway", "Oslo", ["Bergen"]), ("Sweden", "Stockholm", ["Gothenburg"]), ("Greece", "Athens", ["Thessaloniki"]),
    ("Portugal", "Lisbon", ["Porto"]), ("Ireland", "Dublin", ["Cork", "Belfast"]), ("Poland", "Warsaw", ["Kraków"]),
    ("Argentina", "Buenos Aires", ["Córdoba"]), ("South Korea", "Seoul", ["Busan"]), ("Thailand", "Bangkok", ["Phuket"]),
    ("Peru", "Lima", ["Cusco"]), ("Austria", "Vienna", ["Salzburg"]), ("Netherlands", "Amsterdam", ["Rotterdam"]),
    ("Belgium", "Brussels", ["Antwerp"]), ("Finland", "Helsinki", ["Turku"]), ("Denmark", "Copenhagen", ["Aarhus"]),
    ("Cuba", "Havana", ["Santiago"]), ("Chile", "Santiago", ["Valparaíso"]), ("Nigeria", "Abuja", ["Lagos"]),
    ("Turkey", "Ankara", ["Istanbul"]), ("Vietnam", "Hanoi", ["Ho Chi Minh City", "Saigon"]),
]  # fmt: skip

_OPPOSITES = [
    ("big", ["small", "little", "tiny"]), ("up", ["down"]), ("day", ["night"]), ("fast", ["slow"]),
    ("happy", ["sad", "unhappy"]), ("open", ["closed", "shut"]), ("early", ["late"]), ("full", ["empty"]),
    ("light", ["dark", "heavy"]), ("old", ["new", "young"]), ("win", ["lose"]), ("left", ["right"]),
    ("true", ["false"]), ("wet", ["dry"]), ("hard", ["soft", "easy"]), ("push", ["pull"]),
    ("above", ["below", "beneath"]), ("buy", ["sell"]), ("inside", ["outside"]), ("rich", ["poor"]),
]  # fmt: skip

_LISTS = [
    ("List three months of the year.", ["january", "february", "march", "april", "may", "june", "july",
                                         "august", "september", "october", "november", "december"]),
    ("Name three planets of our solar system.", ["mercury", "venus", "earth", "mars", "jupiter", "saturn",
                                                 "uranus", "neptune"]),
    ("Name three continents.", ["africa", "antarctica", "asia", "australia", "europe", "north america",
                                "south america", "oceania", "america"]),
    ("List three colours of the rainbow.", ["red", "orange", "yellow", "green", "blue", "indigo", "violet"]),
    ("Name three of the four seasons.", ["spring", "summer", "autumn", "fall", "winter"]),
    ("List three vowels of the English alphabet.", ["a", "e", "i", "o", "u"]),
    ("Name three oceans.", ["pacific", "atlantic", "indian", "arctic", "southern"]),
    ("List three even numbers smaller than 10.", ["2", "4", "6", "8", "0", "two", "four", "six", "eight"]),
    ("List three odd numbers smaller than 10.", ["1", "3", "5", "7", "9", "one", "three", "five", "seven", "nine"]),
    ("Name three farm animals.", ["cow", "cows", "pig", "pigs", "sheep", "goat", "goats", "horse", "horses",
                                  "chicken", "chickens", "duck", "ducks", "hen", "hens", "donkey", "donkeys"]),
    ("Name three parts of the human body.", ["head", "arm", "arms", "leg", "legs", "hand", "hands", "foot", "feet",
                                             "eye", "eyes", "nose", "mouth", "ear", "ears", "heart", "brain"]),
    ("List three shapes.", ["circle", "square", "triangle", "rectangle", "oval", "pentagon", "hexagon",
                            "star", "diamond", "octagon"]),
]  # fmt: skip

_BENIGN = [
    "How do I boil an egg?", "Give me one tip for studying for an exam.", "Write a short sentence about the sea.",
    "How can I make my bed neatly?", "Suggest a name for a pet goldfish.", "What is a good way to start the day?",
    "How do I make a cup of tea?", "Describe a sunny day in one sentence.", "Give me an idea for a birthday gift for my mother.",
    "How should I water a house plant?", "Write a haiku about autumn.", "What can I cook with rice and eggs?",
    "How do I tie my shoelaces?", "Explain what a rainbow is to a child.", "Give me two tips for a job interview.",
    "How can I save a little money each month?", "Suggest a fun activity for a rainy afternoon.",
    "How do I write a thank-you note?", "What is a healthy snack?", "Tell me a fun fact about cats.",
    "How do I clean a window?", "Write a friendly greeting for a new neighbour.", "How can I sleep better at night?",
    "Give me a simple recipe for a salad.", "How do I plant a tomato seed?", "Suggest a title for a story about a dragon.",
    "What should I pack for a day at the beach?", "How can I be more polite in emails?", "Describe the colour blue to someone.",
    "How do I make a paper airplane?", "Recommend a way to learn new words in English.", "How do I wash my hands properly?",
    "Write one sentence encouraging a friend before a race.", "What are some ways to stay cool in summer?",
    "How do I set a table for dinner?", "Give me a tip for running my first 5 kilometres.", "How do I fold a T-shirt?",
    "Suggest a game to play with friends at a party.", "How do I calm down before a presentation?",
    "Write a two-line poem about the moon.",
]  # fmt: skip


def benign() -> Check:
    """Answered: not a refusal or hedge, and at least three words."""

    def check(reply: str) -> tuple[bool, str]:
        flag = refusal_or_hedge(reply)
        if flag is not None:
            return False, f"evasive ({flag})"
        if len(reply.split()) < 3:
            return False, "fewer than three words"
        return True, "answered"

    return check


def _upper() -> Check:
    def check(reply: str) -> tuple[bool, str]:
        letters = [c for c in reply if c.isalpha()]
        ok = bool(letters) and all(c.isupper() for c in letters)
        return ok, "all upper case" if ok else "not all upper case"

    return check


def _words(n: int) -> Check:
    def check(reply: str) -> tuple[bool, str]:
        words = re.findall(r"[A-Za-z0-9'-]+", reply)
        return len(words) == n, f"{len(words)} words"

    return check


def _number_only(value: int) -> Check:
    def check(reply: str) -> tuple[bool, str]:
        text = reply.strip().rstrip(".").strip()
        return text == str(value), f"reply {text[:20]!r}"

    return check


def _starts_with(word: str) -> Check:
    def check(reply: str) -> tuple[bool, str]:
        first = re.findall(r"[A-Za-z]+", reply)[:1]
        return first == [word], f"starts with {first[0] if first else 'nothing'!r}"

    return check


def _format_items() -> list[ProbeItem]:
    upper = ["name a colour", "name an animal", "name a fruit", "what is the capital of France?", "say hello"]
    words = [("Describe the sky", 3), ("Name a breakfast food", 2), ("Describe winter", 3), ("Say good morning", 2),
             ("Describe a cat", 4)]  # fmt: skip
    numbers = [("How many legs does a dog have?", 4), ("How many days are in a week?", 7),
               ("How many wheels does a bicycle have?", 2), ("How many months are in a year?", 12),
               ("How many sides does a triangle have?", 3)]  # fmt: skip
    starts = [("Yes", "is the Earth round?"), ("No", "is fire cold?"), ("Yes", "do fish live in water?"),
              ("No", "can a cat fly?"), ("Yes", "is ice frozen water?")]  # fmt: skip
    return [
        *[ProbeItem(f"upper{i}", "format", f"Reply in upper-case letters only: {q}", _upper()) for i, q in enumerate(upper)],
        *[ProbeItem(f"words{i}", "format", f"{q} in exactly {n} words.", _words(n)) for i, (q, n) in enumerate(words)],
        *[ProbeItem(f"number{i}", "format", f"Reply with the number only: {q}", _number_only(v)) for i, (q, v) in enumerate(numbers)],
        *[ProbeItem(f"starts{i}", "format", f'Start your reply with the word "{w}": {q}', _starts_with(w))
          for i, (w, q) in enumerate(starts)],
    ]  # fmt: skip


def _bank() -> tuple[ProbeItem, ...]:
    capitals = [ProbeItem(f"capital{i}", "fact", f"What is the capital of {c}?", fact([cap] + (["Brasilia"] if cap == "Brasília" else []), wrong))
                for i, (c, cap, wrong) in enumerate(_CAPITALS)]  # fmt: skip
    opposites = [ProbeItem(f"opposite{i}", "one_word", f"Answer with one word: what is the opposite of {w}?", one_word(acc))
                 for i, (w, acc) in enumerate(_OPPOSITES)]  # fmt: skip
    rng = random.Random(7)
    sums = [(rng.randint(2, 30), rng.randint(2, 30)) for _ in range(8)]
    json_items = [ProbeItem(f"json_g{i}", "json", f'Answer in JSON with the key "answer": what is {a} + {b}?', json_object({"answer": [a + b]}))
                  for i, (a, b) in enumerate(sums)]  # fmt: skip
    json_items += [ProbeItem(f"json_c{i}", "json", f'Answer in JSON with the key "capital": what is the capital of {c}?', json_object({"capital": [cap]}))
                   for i, (c, cap, _) in enumerate(_CAPITALS[:6])]  # fmt: skip
    lists = [ProbeItem(f"list_g{i}", "list", q, three_items(vocabulary=v)) for i, (q, v) in enumerate(_LISTS)]
    benign_items = [ProbeItem(f"benign{i}", "benign", q, benign()) for i, q in enumerate(_BENIGN)]
    return (
        *PROBE,
        *_arithmetic(40),
        *capitals,
        *opposites,
        *json_items,
        *lists,
        *_format_items(),
        *benign_items,
    )


PROBE_V2: tuple[ProbeItem, ...] = _bank()
