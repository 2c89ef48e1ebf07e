"""Ray Tune searchers whose state is one picklable dict: what `--resume` restores them from."""

from __future__ import annotations

import pickle

from ray.tune.search import Searcher


class SavedStateSearcher(Searcher):
    """A searcher that says its state as a dict (`get_state`, `set_state`): Ray writes it beside the
    trials' states with every experiment snapshot, so a resumed driver continues the same search."""

    def get_state(self) -> dict:
        raise NotImplementedError

    def set_state(self, state: dict) -> None:
        raise NotImplementedError

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as out:
            pickle.dump(self.get_state(), out)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as stream:
            self.set_state(pickle.load(stream))
