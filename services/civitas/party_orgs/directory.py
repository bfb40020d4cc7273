"""The directory: party_orgs' own read model for the queries that span aggregates.

Listing a unit's children, finding the grid that covers an address, walking the
org tree and listing pairings need more than one stream; this projection keeps
them in tables, fed from the service's own store. Queries about one aggregate
(GetAdminUnit, GetPartyOrg, GetMember) read the aggregate itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from civitas.eventkit import Projection, RecordedEvent, handles
from civitas.eventkit.readmodels import create_tables

metadata = sa.MetaData()
units = sa.Table(
    "directory_units",
    metadata,
    sa.Column("code", sa.String(40), primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("parent_code", sa.String(40), index=True),
    sa.Column("addresses", sa.Text, nullable=False),
)
orgs = sa.Table(
    "directory_orgs",
    metadata,
    sa.Column("org_id", sa.String(40), primary_key=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("parent_id", sa.String(40), index=True),
    sa.Column("unit_code", sa.String(40), nullable=False),
    sa.Column("dissolved", sa.Boolean, nullable=False),
)
pairings = sa.Table(
    "directory_pairings",
    metadata,
    sa.Column("pairing_id", sa.String(40), primary_key=True),
    sa.Column("organ_org_id", sa.String(40), nullable=False, index=True),
    sa.Column("community_org_id", sa.String(40), nullable=False, index=True),
)


def _id(event: RecordedEvent) -> str:
    return event.aggregate_id


class Directory(Projection):
    """Units, orgs and pairings by the keys the queries need."""

    name = "party_orgs_directory"
    tables = (
        units,
        orgs,
        pairings,
    )

    def create(self, conn: sa.Connection) -> None:
        create_tables(conn, metadata)

    def clear(self, conn: sa.Connection) -> None:
        for table in (units, orgs, pairings):
            conn.execute(table.delete())

    @handles("UnitRegistered")
    def on_unit_registered(self, event: RecordedEvent, conn: sa.Connection) -> None:
        data = event.data
        conn.execute(
            units.insert().values(
                code=data["code"],
                kind=data["kind"],
                name=data["name"],
                parent_code=data["parent_code"],
                addresses=json.dumps(data["addresses"]),
            )
        )

    @handles("UnitRenamed")
    def on_unit_renamed(self, event: RecordedEvent, conn: sa.Connection) -> None:
        conn.execute(
            units.update().where(units.c.code == _id(event)).values(name=event.data["name"])
        )

    @handles("PartyOrgFounded")
    def on_org_founded(self, event: RecordedEvent, conn: sa.Connection) -> None:
        data = event.data
        conn.execute(
            orgs.insert().values(
                org_id=_id(event),
                kind=data["kind"],
                name=data["name"],
                parent_id=data["parent_id"],
                unit_code=data["unit_code"],
                dissolved=False,
            )
        )

    @handles("PartyOrgMoved")
    def on_org_moved(self, event: RecordedEvent, conn: sa.Connection) -> None:
        conn.execute(
            orgs.update()
            .where(orgs.c.org_id == _id(event))
            .values(parent_id=event.data["new_parent_id"])
        )

    @handles("PartyOrgDissolved")
    def on_org_dissolved(self, event: RecordedEvent, conn: sa.Connection) -> None:
        conn.execute(orgs.update().where(orgs.c.org_id == _id(event)).values(dissolved=True))

    @handles("PairingFormed")
    def on_pairing_formed(self, event: RecordedEvent, conn: sa.Connection) -> None:
        conn.execute(pairings.delete().where(pairings.c.pairing_id == _id(event)))
        conn.execute(
            pairings.insert().values(
                pairing_id=_id(event),
                organ_org_id=event.data["organ_org_id"],
                community_org_id=event.data["community_org_id"],
            )
        )


@dataclass(frozen=True, slots=True)
class TreeNode:
    org_id: str
    depth: int


class DirectoryQueries:
    """Reads of the directory tables (run on a worker thread by the caller)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def children(self, parent_code: str | None) -> list[str]:
        """Codes of the units under ``parent_code`` (the districts when None)."""
        where = (
            units.c.parent_code.is_(None)
            if parent_code is None
            else units.c.parent_code == parent_code
        )
        return self._column(sa.select(units.c.code).where(where).order_by(units.c.code))

    def grid_covering(self, community_code: str, address: str) -> str | None:
        """The grid of a community whose address prefix matches longest."""
        best: tuple[int, str] | None = None
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(units.c.code, units.c.addresses).where(
                    units.c.parent_code == community_code
                )
            )
            for code, addresses in rows:
                for prefix in json.loads(addresses):
                    if address.startswith(prefix) and (best is None or len(prefix) > best[0]):
                        best = (len(prefix), code)
        return best[1] if best else None

    def walk(self, root_id: str | None, max_depth: int) -> list[TreeNode]:
        """Orgs depth first, parents before children (all trees when no root)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(orgs.c.org_id, orgs.c.parent_id, orgs.c.name).where(
                    orgs.c.dissolved.is_(False)
                )
            ).all()
        children: dict[str | None, list[tuple[str, str]]] = {}
        for org_id, parent_id, name in rows:
            children.setdefault(parent_id, []).append((name, org_id))
        starts = [root_id] if root_id else [o for _, o in sorted(children.get(None, []))]
        nodes: list[TreeNode] = []
        stack: list[tuple[str, int]] = [(o, 0) for o in reversed(starts)]
        while stack:
            org_id, depth = stack.pop()
            nodes.append(TreeNode(org_id, depth))
            if max_depth and depth + 1 > max_depth:
                continue
            stack += [(o, depth + 1) for _, o in sorted(children.get(org_id, []), reverse=True)]
        return nodes

    def pairings_of(self, org_id: str | None) -> list[str]:
        query = sa.select(pairings.c.pairing_id).order_by(pairings.c.pairing_id)
        if org_id:
            query = query.where(
                sa.or_(pairings.c.organ_org_id == org_id, pairings.c.community_org_id == org_id)
            )
        return self._column(query)

    def _column(self, query: Any) -> list[str]:
        with self.engine.connect() as conn:
            return [row[0] for row in conn.execute(query)]
