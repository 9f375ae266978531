"""A tokenizer named by dotted path in text-task tests: tests.tokenizers_for_tests.letters."""


def letters(text: str) -> list[int]:
    """a–z (either case) as 1 … 26, everything else as 0."""
    return [ord(c) - 96 if "a" <= c <= "z" else 0 for c in text.lower()]
