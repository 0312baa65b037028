"""A faithful local Kalshi exchange (REST + WebSocket) for the demo, tests and benchmarks.

See docs/simulator.md for what is faithful, what is simplified and how to inject faults.
"""

from kalshi.sim.engine import Engine
from kalshi.sim.faults import FaultPlan, Faults
from kalshi.sim.server import SimExchange, open_sim_exchange
from kalshi.sim.truth import SimEvent, Truth

__all__ = ["Engine", "FaultPlan", "Faults", "SimEvent", "SimExchange", "Truth", "open_sim_exchange"]
