"""ftrl: feedback-driven tool-use RL in automatically built, verifiable environments."""

__version__ = "0.1.0"
