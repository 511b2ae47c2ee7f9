"""The split-target game: each agent holds half of the target, the reward comes at the end."""

from __future__ import annotations

import pytest

from runtime.games import SplitTargetGame


def _target_position(game: SplitTargetGame, agent: str) -> int:
    """Where the target is in `agent`'s own list (read from outside, as a test may)."""
    names = game.action_names(agent)
    return names.index(" ".join(values[i] for values, i in
                                zip(game.options.attributes.values(), game._target, strict=True)))


def test_each_agent_is_told_one_half_and_it_leaves_a_row_of_candidates() -> None:
    game = SplitTargetGame()
    game.reset(seed=4)
    colour, shape = (game.text_observation(a).rsplit(": ", 1)[1].rstrip(".")
                     for a in ("alice", "bob"))
    assert "Target colour:" in game.text_observation("alice")
    assert "Target shape:" in game.text_observation("bob")
    names = game.action_names("alice")
    assert len(names) == 4 and sorted(names) == sorted(game.action_names("bob"))
    assert [n for n in names if n.startswith(colour)] != [n for n in names if n.endswith(shape)]
    assert [n for n in names if n == f"{colour} {shape}"] == [f"{colour} {shape}"]
    assert sum(n.startswith(colour) for n in names) == sum(n.endswith(shape) for n in names) == 2
    # What each was told is its private information: what its messages should carry.
    assert (game.private_information("alice"), game.private_information("bob")) == (colour, shape)


def test_no_reward_before_the_end_then_the_fraction_of_right_picks() -> None:
    game = SplitTargetGame(rounds=3)
    game.reset(seed=1)
    right = {agent: _target_position(game, agent) for agent in ("alice", "bob")}
    wrong = {agent: (right[agent] + 1) % 4 for agent in right}
    for picks in (right, {"alice": right["alice"], "bob": wrong["bob"]}):
        _, rewards, done, _, _ = game.step(picks)
        assert rewards == {"alice": 0.0, "bob": 0.0} and not any(done.values())
    _, rewards, done, _, infos = game.step(right)
    assert all(done.values()) and rewards["alice"] == rewards["bob"] == pytest.approx(5 / 6)
    assert infos["alice"]["success"] is True and game.agents == []


def test_the_episode_fails_when_a_last_pick_misses() -> None:
    game = SplitTargetGame(rounds=1)
    game.reset(seed=2)
    right = _target_position(game, "alice")
    _, rewards, _, _, infos = game.step({"alice": right, "bob": (_target_position(game, "bob")
                                                                 + 1) % 4})
    assert infos["bob"]["success"] is False and rewards["alice"] == 0.5


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="exactly two attributes"):
        SplitTargetGame(attributes={"colour": ["red", "blue"]})
    with pytest.raises(ValueError, match="grid=3"):
        SplitTargetGame(grid=3, attributes={"colour": ["red", "blue"], "shape": ["a", "b", "c"]})
