"""Built-in text games: PettingZoo API, seeding, and each game's rules."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from pettingzoo import ParallelEnv
from pettingzoo.test import parallel_api_test

from runtime.games import (
    GAMES,
    MatrixGame,
    NegotiationGame,
    ReferentialGame,
    TextGame,
    make_game,
)

VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("referential", {}),
    ("referential", {"num_objects": 5, "attributes": ["size", "colour", "shape"], "rounds": 3}),
    ("referential", {"attributes": {"tint": ["dark", "light"], "kind": ["cup", "jar", "box"]}}),
    ("matrix", {}),
    ("matrix", {"payoffs": {"preset": "rock_paper_scissors"}, "rounds": 3}),
    ("matrix", {"actions": ["a", "b"], "payoff": [[[1, 1], [0, 2]], [[2, 0], [0, 0]]]}),
    ("negotiation", {}),
    ("negotiation", {"items": ["book", "hat"], "max_count": 4, "max_turns": 2, "first": "agent_1"}),
    ("split_target", {}),
    ("split_target", {"grid": 3, "rounds": 5}),
]


def rollout(env: ParallelEnv, seed: int, policy_seed: int = 0) -> list[Any]:
    """Play one episode with a seeded random policy that honours masks; record everything."""
    rng = np.random.default_rng(policy_seed)
    observations, infos = env.reset(seed=seed)
    record: list[Any] = []
    while env.agents:
        record.append({a: (env.text_observation(a), observations[a].tolist()) for a in env.agents})
        actions = {}
        for agent in env.agents:
            mask = infos[agent].get("action_mask", [True] * env.action_space(agent).n)
            actions[agent] = int(rng.choice(np.flatnonzero(mask)))
        observations, rewards, _, _, infos = env.step(actions)
        record.append((actions, rewards, infos))
    return record


@pytest.mark.parametrize(("name", "options"), VARIANTS)
def test_parallel_api(name: str, options: dict[str, Any]) -> None:
    env = make_game(name, **options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parallel_api_test(env, num_cycles=50)
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize(("name", "options"), VARIANTS)
def test_same_seed_same_episode(name: str, options: dict[str, Any]) -> None:
    first = rollout(make_game(name, **options), seed=3)
    assert first == rollout(make_game(name, **options), seed=3)


@pytest.mark.parametrize("name", ["referential", "negotiation"])
def test_different_seeds_differ(name: str) -> None:
    env = make_game(name)
    texts = set()
    for seed in range(8):
        env.reset(seed=seed)
        texts.add(env.text_observation(env.possible_agents[0]))
    assert len(texts) > 1


@pytest.mark.parametrize(("name", "options"), VARIANTS)
def test_action_names_match_spaces(name: str, options: dict[str, Any]) -> None:
    env = make_game(name, **options)
    env.reset(seed=0)
    for agent in env.possible_agents:
        names = env.action_names(agent)
        assert len(names) == env.action_space(agent).n
        assert len(set(names)) == len(names)
        assert env.observation_space(agent).contains(env.observation(agent))


def test_registry_names_and_unknown_game() -> None:
    assert set(GAMES) == {"referential", "matrix", "negotiation", "split_target"}
    assert all(isinstance(make_game(name), TextGame) for name in GAMES)
    with pytest.raises(ValueError, match="unknown game"):
        make_game("chess")


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("referential", {"num_objects": 1}, "num_objects"),
        ("referential", {"attributes": ["smell"]}, "unknown attributes"),
        ("referential", {"num_objects": 9, "attributes": ["size", "shape"]}, "distinct objects"),
        ("referential", {"distractor_similarity": 1.5}, "distractor_similarity"),
        ("matrix", {"payoffs": "bogus"}, "unknown preset"),
        ("matrix", {"actions": ["a", "b"], "payoff": [[[1, 1]]]}, "2 x 2"),
        ("matrix", {"rounds": 0}, "rounds"),
        ("matrix", {"colour": "red"}, "colour"),
        ("negotiation", {"min_count": 3, "max_count": 2}, "exceeds"),
        ("negotiation", {"items": ["book"], "min_count": 3, "total_value": 10}, "worth exactly"),
    ],
)
def test_bad_options_raise_value_error(name: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_game(name, **options)


# --- referential ---------------------------------------------------------------------------


def target_of(env: ReferentialGame) -> str:
    """The target description, read from the speaker's text as a scripted speaker would."""
    text = env.text_observation("speaker")
    marker = "Target: " if env.options.wording == "brief" else "Your target is the "
    return text.split(marker, 1)[1].split(".", 1)[0]


def test_listener_text_does_not_depend_on_the_target() -> None:
    env = ReferentialGame(num_objects=4)
    env.reset(seed=5)
    listener_texts, speaker_texts = set(), set()
    for target in range(4):
        env._target = target  # what the listener sees must not change with the target
        listener_texts.add(env.text_observation("listener"))
        speaker_texts.add(env.text_observation("speaker"))
        listener_obs = env.observation("listener")
    assert len(listener_texts) == 1 and len(speaker_texts) == 4
    assert "target is" not in listener_texts.pop() and listener_obs.shape == (4 * 9,)


def test_brief_wording_states_the_same_facts_in_few_words() -> None:
    full, brief = ReferentialGame(num_objects=3), ReferentialGame(num_objects=3, wording="brief")
    full.reset(seed=3)
    brief.reset(seed=3)
    target = target_of(full)
    assert brief.text_observation("speaker").endswith(f"Target: {target}.")
    assert brief.text_observation("listener") == (
        f"Objects: {', '.join(brief.action_names('listener'))}.")
    assert len(brief.text_observation("speaker")) < len(full.text_observation("speaker")) / 3


@pytest.mark.parametrize("wording", ["full", "brief"])
def test_a_target_only_speaker_view_names_no_other_object(wording: str) -> None:
    env = ReferentialGame(num_objects=3, wording=wording, speaker_view="target")
    env.reset(seed=5)
    target = target_of(env)
    others = [name for name in env.action_names("listener") if name != target]
    seen = env.text_observation("speaker")
    assert target in seen and not any(name in seen for name in others)
    assert env.observation("speaker").shape == (4 * 9,)  # the numeric view is unchanged


def test_speaker_observation_identifies_the_target() -> None:
    env = ReferentialGame(num_objects=3)
    env.reset(seed=2)
    pick = env.action_names("listener").index(target_of(env))
    width = 9  # 5 colours + 4 shapes
    speaker, listener = env.observation("speaker"), env.observation("listener")
    np.testing.assert_array_equal(speaker[:width], listener[pick * width : (pick + 1) * width])


def test_the_speakers_private_information_is_the_target_and_the_listener_has_none() -> None:
    env = ReferentialGame(num_objects=3)
    env.reset(seed=2)
    assert env.private_information("speaker") == target_of(env)
    assert env.private_information("listener") is None


def test_correct_pick_rewards_both_and_wrong_pick_does_not() -> None:
    env = ReferentialGame(reward_correct=2.0, reward_wrong=-1.0)
    for correct in (True, False):
        env.reset(seed=11)
        names = env.action_names("listener")
        right = names.index(target_of(env))
        pick = right if correct else (right + 1) % len(names)
        _, rewards, terminated, _, infos = env.step({"speaker": 0, "listener": pick})
        assert rewards == dict.fromkeys(["speaker", "listener"], 2.0 if correct else -1.0)
        assert all(terminated.values()) and env.agents == []
        assert infos["listener"]["success"] is correct and infos["speaker"]["success"] is correct


def test_listener_order_is_independent_of_speaker_order() -> None:
    env = ReferentialGame(num_objects=4)
    same = 0
    for seed in range(20):
        env.reset(seed=seed)
        same += env._listener_order.index(env._target) == env._target
    assert same < 20


def test_similar_distractors_differ_from_the_target_in_one_attribute() -> None:
    env = ReferentialGame(num_objects=4, distractor_similarity=1.0)
    for seed in range(10):
        env.reset(seed=seed)
        target = target_of(env).split()
        for name in env.action_names("listener"):
            if name.split() != target:
                assert sum(a != b for a, b in zip(name.split(), target, strict=True)) == 1


def _centre_pick_success(env: ReferentialGame, episodes: int) -> float:
    """Success of a listener that ignores the message and picks the object nearest to all
    others (fewest differing attributes in total): the set's shape as the only clue."""
    wins = 0
    for seed in range(episodes):
        env.reset(seed=seed)
        names = [name.split() for name in env.action_names("listener")]
        distance = [sum(a != b for other in names for a, b in zip(name, other, strict=True))
                    for name in names]
        wins += names[distance.index(min(distance))] == target_of(env).split()
    return wins / episodes


def test_similar_distractors_betray_the_target_and_a_uniform_draw_does_not() -> None:
    attributes = {"colour": ["red", "blue", "green"], "shape": ["circle", "square", "star"]}
    around = ReferentialGame(attributes=attributes, distractor_similarity=1.0)
    uniform = ReferentialGame(attributes=attributes, draw="uniform")
    assert _centre_pick_success(around, 300) > 0.6  # about 7/9 without reading any message
    assert _centre_pick_success(uniform, 300) < 0.45  # chance: 1/3
    for seed in range(20):
        uniform.reset(seed=seed)
        names = uniform.action_names("listener")
        assert len(set(names)) == 3 and target_of(uniform) in names


def test_rounds_draw_new_objects_and_end_the_episode() -> None:
    env = ReferentialGame(rounds=3)
    env.reset(seed=1)
    for round_ in range(1, 4):
        assert env.text_observation("speaker").startswith(f"Round {round_} of 3.")
        pick = env.action_names("listener").index(target_of(env))
        _, _, terminated, _, infos = env.step({"speaker": 0, "listener": pick})
        assert terminated["speaker"] is (round_ == 3)
    assert infos["speaker"]["success_rate"] == 1.0 and env.agents == []



def test_a_sparse_referential_game_pays_the_mean_only_at_the_end_and_shows_the_score() -> None:
    env = ReferentialGame(rounds=3, reward_at="end", show_score=True, reward_wrong=-1.0)
    env.reset(seed=2)
    paid = []
    for round_, (right, so_far) in enumerate(((True, ""), (False, "1 of 1"), (True, "1 of 2"))):
        assert (f"Right so far: {so_far}." in env.text_observation("listener")) is (round_ > 0)
        names = env.action_names("listener")
        target = names.index(target_of(env))
        pick = target if right else (target + 1) % len(names)
        _, rewards, _, _, _ = env.step({"speaker": 0, "listener": pick})
        paid.append(rewards["listener"])
    assert paid == [0.0, 0.0, pytest.approx(-1.0 + 2.0 * 2 / 3)]

# --- matrix --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "moves", "expected"),
    [
        ("prisoners_dilemma", (0, 0), (3.0, 3.0)),
        ("prisoners_dilemma", (0, 1), (0.0, 5.0)),
        ("prisoners_dilemma", (1, 0), (5.0, 0.0)),
        ("prisoners_dilemma", (1, 1), (1.0, 1.0)),
        ("coordination", (1, 1), (1.0, 1.0)),
        ("coordination", (0, 1), (0.0, 0.0)),
        ("rock_paper_scissors", (1, 0), (1.0, -1.0)),  # paper beats rock
        ("rock_paper_scissors", (0, 1), (-1.0, 1.0)),
    ],
)
def test_matrix_presets_pay_the_table(
    preset: str, moves: tuple[int, int], expected: tuple[float, float]
) -> None:
    env = MatrixGame(payoffs={"preset": preset})
    env.reset(seed=0)
    _, rewards, _, _, _ = env.step({"player_0": moves[0], "player_1": moves[1]})
    assert (rewards["player_0"], rewards["player_1"]) == expected


def test_matrix_explicit_table_and_history() -> None:
    env = MatrixGame(
        payoffs={"actions": ["x", "y"], "payoff": [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]}
    )
    env.reset()
    observations, rewards, _, _, _ = env.step({"player_0": 0, "player_1": 1})
    assert rewards == {"player_0": 3.0, "player_1": 4.0}
    assert "round 1: you y, they x" in env.text_observation("player_1")
    assert "Score so far: you 4, they 3" in env.text_observation("player_1")
    np.testing.assert_allclose(observations["player_1"], [0, 1, 1, 0, 0.1], rtol=1e-6)


def test_matrix_rounds_end_the_episode_with_success() -> None:
    env = MatrixGame(rounds=4)
    env.reset(seed=0)
    for round_ in range(1, 5):
        _, _, terminated, truncated, infos = env.step({"player_0": 0, "player_1": 0})
        assert terminated["player_0"] is (round_ == 4) and not truncated["player_0"]
    assert env.agents == [] and infos["player_0"]["success"] is True


def test_matrix_constant_sum_game_reports_no_success() -> None:
    env = MatrixGame(payoffs="rock_paper_scissors", rounds=1)
    env.reset()
    *_, infos = env.step({"player_0": 0, "player_1": 2})
    assert "success" not in infos["player_0"]


# --- negotiation ---------------------------------------------------------------------------


def test_negotiation_masks_at_the_start() -> None:
    env = NegotiationGame(first="agent_0")
    _, infos = env.reset(seed=4)
    holder, other = infos["agent_0"]["action_mask"], infos["agent_1"]["action_mask"]
    assert other == [True] + [False] * (len(other) - 1)
    assert holder[:3] == [False, False, True]  # no wait, no accept without an offer
    for index, name in enumerate(env.action_names("agent_0")[3:], start=3):
        takes = [int(word) for word in name.split()[1::2]]
        assert holder[index] == all(t <= c for t, c in zip(takes, env.counts, strict=True))


def test_negotiation_accept_without_offer_is_ignored() -> None:
    env = NegotiationGame(first="agent_0")
    env.reset(seed=4)
    _, rewards, terminated, _, infos = env.step({"agent_0": 1, "agent_1": 0})
    assert infos["agent_0"]["illegal_action"] is True and not any(terminated.values())
    assert rewards == {"agent_0": 0.0, "agent_1": 0.0}
    assert infos["agent_1"]["action_mask"][2] and not infos["agent_0"]["action_mask"][2]


def test_negotiation_deal_pays_each_their_own_values() -> None:
    env = NegotiationGame(first="agent_0")
    env.reset(seed=9)
    take = tuple(c // 2 for c in env.counts)
    env.step({"agent_0": env.split_action(take), "agent_1": 0})
    assert "agent_0 offers to take" in env.text_observation("agent_1")
    _, rewards, terminated, truncated, infos = env.step({"agent_0": 0, "agent_1": 1})
    rest = tuple(c - t for c, t in zip(env.counts, take, strict=True))
    assert rewards["agent_0"] == float(np.dot(env.values["agent_0"], take))
    assert rewards["agent_1"] == float(np.dot(env.values["agent_1"], rest))
    assert all(terminated.values()) and not any(truncated.values())
    assert infos["agent_0"]["success"] is True and env.agents == []


def test_negotiation_walk_away_gives_no_deal_reward() -> None:
    env = NegotiationGame(first="agent_1", no_deal_reward=-0.5)
    env.reset(seed=1)
    _, rewards, terminated, _, infos = env.step({"agent_0": 0, "agent_1": 2})
    assert rewards == {"agent_0": -0.5, "agent_1": -0.5} and all(terminated.values())
    assert infos["agent_1"]["success"] is False


def test_negotiation_truncates_at_max_turns() -> None:
    env = NegotiationGame(max_turns=3, first="agent_0", no_deal_reward=0.25)
    env.reset(seed=2)
    offer = env.split_action(env.counts)
    for turn in range(3):
        holder = env.possible_agents[turn % 2]
        other = env.possible_agents[1 - turn % 2]
        _, rewards, terminated, truncated, infos = env.step({holder: offer, other: 0})
    assert all(truncated.values()) and not any(terminated.values()) and env.agents == []
    assert rewards == {"agent_0": 0.25, "agent_1": 0.25} and infos["agent_0"]["success"] is False


def test_negotiation_values_are_private_and_sum_to_the_total() -> None:
    env = NegotiationGame(total_value=12)
    for seed in range(10):
        env.reset(seed=seed)
        for agent in env.possible_agents:
            assert np.dot(env.values[agent], env.counts) == 12
    before = env.text_observation("agent_0")
    env.values["agent_1"] = tuple(v + 7 for v in env.values["agent_1"])
    assert env.text_observation("agent_0") == before
