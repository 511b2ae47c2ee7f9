"""A custom agent for the iterated prisoner's dilemma: it cooperates, and says so, until
it is cheated once; from then on it defects, and says that too."""

from __future__ import annotations

from collections.abc import Sequence

from agents import AgentContext, Choice, Utterance
from protocols import Envelope, Observation

SUCKER = 0.0
"""The payoff of cooperating against a defection (the prisoners_dilemma preset)."""


class Grudger:
    """Built by the runtime from its context: its name, routes, schemas and options."""

    def __init__(self, context: AgentContext) -> None:
        self.name = context.name
        self.routes = context.routes        # the messages it may send, and to whom
        self.registry = context.registry    # the pydantic model of each message schema
        self.cheated = False

    def observe_reward(self, reward: float) -> None:
        """Optional (`RewardObserver`): told every reward it gets."""
        if reward == SUCKER:
            self.cheated = True

    def _intent(self) -> str:
        return "defect" if self.cheated else "cooperate"

    async def speak(self, observation: Observation, inbox: Sequence[Envelope]
                    ) -> list[Utterance]:
        """One message per route; each must validate against the route's schema."""
        payload = {"intent": self._intent(), "text": f"I will {self._intent()}."}
        return [Utterance(route.recipient, route.schema_id,
                          self.registry.validate(route.schema_id, payload))
                for route in self.routes]

    async def act(self, observation: Observation, inbox: Sequence[Envelope]) -> Choice:
        """An index into the observation's action names (the runner checks it is legal)."""
        return Choice(observation.action_names.index(self._intent()))
