"""The runtime: buses, the Runner, environments, scenarios, recording and the CLI."""

from runtime.bus import Bus, BusStats, topic_for
from runtime.envs import EnvHost, make_env
from runtime.hub import SubscriptionHub
from runtime.local_bus import LocalBus
from runtime.mqtt_address import BusConnectionError
from runtime.mqtt_bus import ConnectionState, MqttBus
from runtime.play import play
from runtime.play_settings import PlaySettings
from runtime.runner import Runner
from runtime.scenario import Scenario, load_scenario
from runtime.summary import EpisodeResult, RunSummary

__all__ = [
    "Bus",
    "BusConnectionError",
    "BusStats",
    "ConnectionState",
    "EnvHost",
    "EpisodeResult",
    "LocalBus",
    "MqttBus",
    "PlaySettings",
    "RunSummary",
    "Runner",
    "Scenario",
    "SubscriptionHub",
    "load_scenario",
    "make_env",
    "play",
    "topic_for",
]
