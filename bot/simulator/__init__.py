"""The simulator: a web chat page and its channel (web), and the terminal chat (terminal), so
the bot can be used with no platform account at all."""

from bot.simulator.web import SimulatorChannel, simulator_routes

__all__ = ["SimulatorChannel", "simulator_routes"]
