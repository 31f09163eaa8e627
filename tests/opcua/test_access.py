"""Areas recomputed once per topology change, and account changes heard by watchers."""

from __future__ import annotations

from adapters.opcua.model.access import EVERYTHING, NOTHING, AreaAccess
from adapters.opcua.model.users import OperatorAccount, OperatorRole, UserDirectory
from gateway.coordination.topology import Topology
from gateway.domain import DsoModel, Participant, Role

DP = DsoModel.DUAL_PARTICIPATION


def topology(*, embedded: bool) -> Topology:
    parts = [Participant("ldc-h", Role.LDC, dso_model=DP),
             Participant("ldc-e", Role.LDC, dso_model=DP,
                         host_ldc_id="ldc-h" if embedded else None),
             Participant("scada-h", Role.SCADA, ldc_id="ldc-h"),
             Participant("admin", Role.ADMIN), Participant("agg-x", Role.AGGREGATOR)]
    return Topology({p.id: p for p in parts}, {}, {})


def account(ldc_id: str) -> OperatorAccount:
    return OperatorAccount(f"op-{ldc_id}", OperatorRole.VIEWER, ldc_id, "scrypt$x")


def test_a_detached_embedded_ldc_leaves_the_hosts_area_in_one_refresh():
    access = AreaAccess(None, None)  # type: ignore[arg-type]  # neither is used below
    assert access.refresh(topology(embedded=True)) is False  # no participant in use yet
    host, scada = account("ldc-h"), account("scada-h")
    assert access.cached_view(host).ldcs == {"ldc-h", "ldc-e"}
    assert access.cached_view(scada).ldcs == {"ldc-h", "ldc-e"}
    assert access.cached_view(account("admin")) is EVERYTHING
    assert access.cached_view(account("agg-x")) == NOTHING
    assert access.refresh(topology(embedded=False)) is True
    assert access.cached_view(host).ldcs == {"ldc-h"}
    assert access.cached_view(scada).ldcs == {"ldc-h"}
    assert access.refresh(topology(embedded=False)) is False  # nothing changed
    assert access.refresh(topology(embedded=True)) is True  # attached again
    assert access.cached_view(host).ldcs == {"ldc-h", "ldc-e"}


def test_user_directory_watchers_hear_replacements_and_removals():
    users, heard = UserDirectory(), []

    def watcher(name, acc):
        heard.append((name, acc.ldc_id if acc else None))

    users.watch(watcher)
    users.add(account("ldc-h"))
    users.add(OperatorAccount("op-ldc-h", OperatorRole.CONTROLLER, "ldc-e", "scrypt$y"))
    assert users.remove("op-ldc-h") and not users.remove("op-ldc-h")
    users.unwatch(watcher)
    users.add(account("ldc-e"))
    assert heard == [("op-ldc-h", "ldc-h"), ("op-ldc-h", "ldc-e"), ("op-ldc-h", None)]
