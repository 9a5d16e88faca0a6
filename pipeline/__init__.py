"""journeys: omnichannel customer-journey analytics."""

__version__ = "0.4.0"
