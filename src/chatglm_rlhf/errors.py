"""Errors that mean "the user's input is wrong": the CLI prints them without a traceback."""


class UserError(Exception):
    """Bad input (config, data file, paths). The message says where and what was expected."""


class ConfigError(UserError, ValueError):
    """An unknown config key, a wrong type, or a bad value; the message names the key."""


class TrainingError(UserError, RuntimeError):
    """Training cannot go on (e.g. a NaN/inf loss); the message names the step."""


class CorruptFileError(UserError):
    """A file written earlier is truncated or unreadable. ``path`` is that file; ``hint`` says what to do
    (the pipeline's runner replaces a generic hint with the stage to redo)."""

    def __init__(self, path, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.path, self.message, self.hint = path, message, hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message
