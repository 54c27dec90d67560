"""A replica that wins the leader key again while it still leads, or while it still steps
down from its last term (the key went meanwhile, and the election thread won it back): the
new term replaces the old one, the old term's readers stop and hand back what they took,
and the old term's resignation leaves the new term's key alone."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from corral.base.etcd import connect
from corral.base.keys import INGRESS_QUEUE, Keys
from corral.local import LocalCluster
from corral.scheduler.election import Election
from tests.integration.conftest import next_ingress, readers

pytestmark = pytest.mark.integration


def test_a_term_won_again_while_leading_leaves_one_reader_of_each_input(replica: Any) -> None:
    scheduler, _ = replica
    before = len(readers())
    scheduler._apply(("leader", 10**9))
    scheduler._apply(("leader", 10**9 + 1))
    assert len(readers()) == before + 1
    assert scheduler.token == 10**9 + 1


def test_what_the_old_terms_reader_took_comes_to_the_new_term(replica: Any) -> None:
    scheduler, broker = replica
    scheduler._apply(("leader", 10**9))
    broker.lpush(INGRESS_QUEUE, b"not yet durable")
    taken = next_ingress(scheduler)  # read in the first term, never applied
    scheduler._apply(("leader", 10**9 + 1))
    again = next_ingress(scheduler)
    assert again[5] == taken[5] == b"not yet durable"
    assert scheduler.inbound is not None and scheduler.inbound.owns(again[4])
    assert not scheduler.inbound.owns(taken[4])


def test_stepping_down_from_a_term_leaves_the_term_won_since_alone(small: LocalCluster) -> None:
    etcd = connect(small.settings)
    keys = Keys(f"t{uuid.uuid4().hex[:8]}")
    election = Election(etcd, keys, "replica-a", ttl=5)
    try:
        first = election.campaign()
        etcd.delete(keys.leader)  # the key went (its lease ran out while the replica was stopped)
        second = election.campaign()  # and the election thread won it again at once
        assert first is not None and second is not None and second != first
        election.resign(first)  # the loop, only now done stepping down from the first term
        assert etcd.get(keys.leader)[1].create_revision == second
        election.resign(second)
        assert etcd.get(keys.leader)[1] is None
    finally:
        election.resign()
        etcd.close()
