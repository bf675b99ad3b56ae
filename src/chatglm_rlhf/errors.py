"""Errors that mean "the user's input is wrong": the CLI prints them without a traceback."""


class UserError(Exception):
    """Bad input (config, data file, paths). The message says where and what was expected."""


class ConfigError(UserError, ValueError):
    """An unknown config key, a wrong type, or a bad value; the message names the key."""


class TrainingError(UserError, RuntimeError):
    """Training cannot go on (e.g. a NaN/inf loss); the message names the step."""
