"""Feed Kornit QuickP hot folders from KornitX production pushes."""

__version__ = "0.1.0"
