"""The runtime: buses, the Runner, environments, scenarios, recording and the CLI."""

from runtime.bus import Bus, BusStats, topic_for
from runtime.envs import EnvHost, make_env
from runtime.local_bus import LocalBus
from runtime.mqtt_address import BusConnectionError
from runtime.mqtt_bus import MqttBus
from runtime.runner import EpisodeResult, Runner
from runtime.scenario import Scenario, load_scenario
from runtime.session import RunSettings, run_scenario

__all__ = [
    "Bus",
    "BusConnectionError",
    "BusStats",
    "EnvHost",
    "EpisodeResult",
    "LocalBus",
    "MqttBus",
    "RunSettings",
    "Runner",
    "Scenario",
    "load_scenario",
    "make_env",
    "run_scenario",
    "topic_for",
]
