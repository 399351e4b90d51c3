"""Backfill and resync against a loopback relay, PLC directory and PDSes serving real signed repo exports,
with the real repo state table, the real broker and the real projector: discovery pages through, a
backfill lands every record in the read models, a resync deletes what vanished and keeps what is newer,
a repo whose export lies is caught with its reason and nothing of it is projected."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from ingest.backfill import SyncLimits, SyncWorker, sync_lock
from ingest.errors import SyncBusyError
from ingest.identity import AtprotoIdentityResolver, dns_resolver
from ingest.ipld.cid import CID
from ingest.metrics import IngestMetrics
from ingest.producer import KafkaSink, ensure_topic
from ingest.repo_client import RepoClient
from ingest.repo_state import PostgresRepoStateStore, RepoStatus, SyncState
from ingest.settings import IngestSettings
from ingest.sync_app import queue_and_run
from ingest.verify import mst
from ingest.verify.crypto import KeyAlgorithm
from runtime.outbound import Outbound
from runtime.settings import PlatformSettings
from schemas.envelope import Action, RecordEvent, SnapshotEvent, Source
from schemas.migrate import migrate
from tests.fixtures import events as ev
from tests.fixtures.frames import Write
from tests.fixtures.kafka import consume_all
from tests.fixtures.repo_export import ExportableRepo, ExportBlocks, block_of, car_of, mixed_records
from tests.fixtures.signed_repo import new_key, sign
from tests.fixtures.sync_world import SyncWorld, sync_world
from tests.integration.test_projector import projecting, settings, wait_applied

pytestmark = pytest.mark.integration

PLYR = "fm.plyr."


def did_for(name: str) -> str:
    """A did:plc of 24 base32 characters, unique per test run."""
    return "did:plc:" + (name + uuid.uuid4().hex.translate(str.maketrans("0189", "2345")))[:24]


def make_repo(
    name: str, *, plyr: int = 30, other: int = 30, algorithm: KeyAlgorithm = KeyAlgorithm.K256
) -> ExportableRepo:
    repo = ExportableRepo(did_for(name), new_key(algorithm))
    repo.load(mixed_records(repo.did, plyr, other, seed=len(name)))
    return repo


def in_scope(repo: ExportableRepo) -> dict[str, str]:
    """path → record CID of the repo's fm.plyr.* records."""
    return {p: str(c) for p, c in repo.records.items() if p.startswith(PLYR)}


def ingest_settings(world: SyncWorld, **extra: object) -> IngestSettings:
    values: dict[str, object] = {
        "plc_url": world.plc_url,
        "allow_private_hosts": True,
        "backfill_relay": world.relay_url,
        "backfill_page_limit": 2,
        "backfill_per_pds": 1,
        "backfill_retry_base_s": 0.2,
        "backfill_retry_cap_s": 5.0,
        "backfill_poll_s": 0.3,
        "identity_timeout_s": 2.0,
        "metrics_port": 0,
        **extra,
    }
    return IngestSettings(**values)  # type: ignore[arg-type]


def platform(kafka_bootstrap: str, database_url: str, topic: str) -> PlatformSettings:
    return PlatformSettings(
        kafka_bootstrap=kafka_bootstrap, database_url=database_url, events_topic=topic, kafka_idempotence=False
    )


def state_schema() -> str:
    return f"ingest_{uuid.uuid4().hex[:8]}"


async def rows(pool: asyncpg.Pool, schema: str) -> dict[str, RepoStatus]:
    return await PostgresRepoStateStore(pool, schema).load_all()


async def project(plat: PlatformSettings, pool: asyncpg.Pool, total: int) -> str:
    """Run the real projector over the topic until ``total`` events are applied; the read schema."""
    schema = f"bf_{uuid.uuid4().hex[:8]}"
    async with projecting(plat, settings(schema)):
        await wait_applied(pool, schema, plat.events_topic, total)
    return schema


async def ledger(pool: asyncpg.Pool, schema: str, dids: Sequence[str]) -> dict[tuple[str, str], tuple[str, str | None]]:
    """(did, path) → (state, cid) in the projector's records ledger."""
    return {
        (r["did"], f"{r['collection']}/{r['rkey']}"): (r["state"], r["cid"])
        for r in await pool.fetch(
            f"SELECT did, collection, rkey, state, cid FROM {schema}.records WHERE did = ANY($1)", list(dids)
        )
    }


def live(book: dict[tuple[str, str], tuple[str, str | None]], did: str) -> dict[str, str | None]:
    return {path: cid for (d, path), (state, cid) in book.items() if d == did and state == "live"}


def inner_node(parts: ExportBlocks) -> CID:
    """An MST node of an export below its root."""
    for cid, block in parts.blocks.items():
        if cid in (parts.root, parts.data):
            continue
        with contextlib.suppress(mst.MstError):
            mst.decode_node(block)
            return cid
    raise AssertionError("the tree has a single node")


def write(action: str, path: str, record: dict[str, object] | None = None) -> Write:
    collection, rkey = path.split("/")
    return Write(action, collection, rkey, record)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(f"plyr_ingest_{name}", labels) or 0.0


async def test_discovery_pages_through_the_relay_and_queues_only_new_repos(
    kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    schema = state_schema()
    async with sync_world(1) as world:
        repos = [make_repo(f"disc{i}", plyr=2, other=0) for i in range(5)]
        for i, repo in enumerate(repos):
            world.host(repo, listed=("fm.plyr.track", "fm.plyr.like") if i < 2 else ("fm.plyr.track",))
        world.extra_listed = [{"did": "not a did"}, {"handle": "x"}]
        world.relay_throttle = 1
        async with pool.acquire() as conn:
            await migrate(conn, "ingest", schema)
        held = RepoStatus(repos[0].did, rev="3aaaaaaaaaaaa")
        await PostgresRepoStateStore(pool, schema).save([held])
        registry = CollectorRegistry()
        run = await queue_and_run(
            platform(kafka_bootstrap, database_url, topic),
            ingest_settings(world, backfill_discover=("fm.plyr.track", "fm.plyr.like")),
            state=SyncState.BACKFILLING,
            find=True,
            registry=registry,
            schema=schema,
        )
    assert run.discovered is not None
    # 5 tracks at 2 a page, then 2 likes on one page.
    assert (run.discovered.listed, run.discovered.queued, run.discovered.pages) == (5, 4, 4)
    assert run.discovered.invalid == 4  # two bad entries on each collection's first page
    assert not run.ran
    pages = [r for _, r in world.requests if "listReposByCollection" in r]
    # The first page was refused once with 429 and asked again.
    assert len(pages) == 5
    assert [p.split("cursor=")[1] if "cursor=" in p else "" for p in pages if "fm.plyr.track" in p] == [
        "",
        "",
        "2",
        "4",
    ]
    assert all("limit=2" in p for p in pages)
    stored = await rows(pool, schema)
    assert stored[held.did] == held  # already held: left as it is
    for repo in repos[1:]:
        assert (stored[repo.did].state, stored[repo.did].reason) == (SyncState.BACKFILLING, "discovered")
    assert sample(registry, "repos_discovered_total") == 4
    assert sample(registry, "repo_rate_limited_total") == 1


async def test_a_backfill_lands_every_record_in_the_read_models(
    kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    """The worker as the ingester runs it: long-running, woken by requests, on_synced after delivery."""
    schema = state_schema()
    plat = platform(kafka_bootstrap, database_url, topic)
    async with sync_world(2) as world:
        repos = [
            make_repo("alice"),
            make_repo("bob", algorithm=KeyAlgorithm.P256),
            make_repo("carol", plyr=60, other=10),
            make_repo("erin", plyr=10, other=5),
        ]
        for repo, pds in zip(repos, (0, 0, 1, 0), strict=True):
            world.host(repo, pds=pds)
        world.throttle[repos[1].did] = 1
        world.delay = 0.3
        st = ingest_settings(world)
        registry = CollectorRegistry()
        metrics = IngestMetrics(registry)
        synced: list[RepoStatus] = []

        async def on_synced(status: RepoStatus) -> None:
            synced.append(status)

        async with pool.acquire() as conn:
            await migrate(conn, "ingest", schema)
        store = PostgresRepoStateStore(pool, schema)
        await ensure_topic(kafka_bootstrap, topic, 3)
        async with (
            Outbound(allow_private=True) as outbound,
            AtprotoIdentityResolver(outbound, dns_resolver(), plc_url=world.plc_url, timeout=2) as resolver,
            KafkaSink(kafka_bootstrap, topic, idempotence=False, compression="none") as sink,
            sync_lock(pool, schema=schema),
        ):
            worker = SyncWorker(
                store,
                resolver,
                RepoClient(outbound),
                sink,
                collections=st.collection_filter,
                metrics=metrics,
                limits=SyncLimits.from_settings(st),
                allow_private=True,
                on_synced=on_synced,
            )
            task = asyncio.create_task(worker.run())
            await asyncio.sleep(0.2)
            await store.request([r.did for r in repos], SyncState.BACKFILLING, "operator")
            worker.wake()
            async with asyncio.timeout(30):
                while len(synced) < len(repos):
                    await asyncio.sleep(0.05)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # Rate limited once: asked again only after the PDS's Retry-After.
    times = world.get_repo_times(repos[1].did)
    assert len(times) == 2 and times[1] - times[0] >= 0.95
    # One repo at a time per PDS, though three wait on PDS 0.
    assert world.max_inflight[world.pds_ports[0]] == 1

    events = await consume_all(kafka_bootstrap, topic, expect=sum(len(in_scope(r)) + 1 for r in repos))
    stored = await rows(pool, schema)
    by_did = {s.did: s for s in synced}
    for i, repo in enumerate(repos):
        mine = [e for e in events if e.did == repo.did]
        records, snapshot = mine[:-1], mine[-1]
        assert isinstance(snapshot, SnapshotEvent)
        assert all(isinstance(e, RecordEvent) and e.source is Source.BACKFILL for e in records)
        assert {f"{e.collection}/{e.rkey}": e.cid for e in records if isinstance(e, RecordEvent)} == in_scope(repo)
        status = stored[repo.did]
        assert status == by_did[repo.did]
        assert (status.state, status.reason, status.rev, status.data) == (
            SyncState.SYNCHRONIZED,
            None,
            repo.rev,
            str(repo.data),
        )
        assert status.commit == snapshot.commit
        assert status.pds == world.pds_url(1 if i == 2 else 0)
    assert sample(registry, "repo_syncs_total", source="backfill") == len(repos)
    assert sample(registry, "repo_rate_limited_total") == 1
    assert sample(registry, "repo_sync_failures_total", reason="rate_limited") == 1
    assert sample(registry, "repo_records_total", collection="fm.plyr.track") == sum(
        sum(p.startswith("fm.plyr.track/") for p in in_scope(r)) for r in repos
    )

    read = await project(plat, pool, len(events))
    book = await ledger(pool, read, [r.did for r in repos])
    for repo in repos:
        assert live(book, repo.did) == in_scope(repo)
    tracks = await pool.fetchval(f"SELECT count(*) FROM {read}.tracks WHERE did = ANY($1)", [r.did for r in repos])
    assert tracks == sum(sum(p.startswith("fm.plyr.track/") for p in in_scope(r)) for r in repos)
    assert await pool.fetchval(f"SELECT count(*) FROM {read}.dead_letters") == 0


async def test_a_resync_after_records_vanished_deletes_them_and_keeps_newer_writes(
    kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    schema = state_schema()
    plat = platform(kafka_bootstrap, database_url, topic)
    async with sync_world(1) as world:
        repo = make_repo("dave", plyr=40, other=10)
        world.host(repo)
        st = ingest_settings(world)
        first = await queue_and_run(plat, st, state=SyncState.BACKFILLING, dids=[repo.did], run=True, schema=schema)
        assert (first.done, first.failed) == (1, {})
        backfilled = dict(in_scope(repo))

        # While we were not listening: three records deleted, one track rewritten.
        paths = sorted(backfilled)
        gone = [next(p for p in paths if p.startswith(c)) for c in ("fm.plyr.track/", "fm.plyr.like/", "fm.plyr.list/")]
        rewritten = next(p for p in paths if p.startswith("fm.plyr.track/") and p not in gone)
        repo.commit([write("delete", p) for p in gone])
        repo.commit([write("update", rewritten, ev.track("Rewritten"))])
        # The PDS serves the export at this rev; then a live commit writes a new track, and its event
        # reaches the log before the resync's snapshot does.
        world.cars[repo.did] = repo.export_car()
        export_rev = repo.rev
        assert export_rev is not None
        after = "fm.plyr.track/3zzzzzzzzzzz2"
        repo.commit([write("create", after, ev.track("After the export"))])
        async with KafkaSink(kafka_bootstrap, topic, idempotence=False, compression="none") as sink:
            fut = await sink.send(
                RecordEvent(
                    did=repo.did,
                    upstream="relay.test",
                    seq=1,
                    time=ev.T0,
                    rev=repo.rev,
                    collection="fm.plyr.track",
                    rkey=after.split("/")[1],
                    action=Action.CREATE,
                    cid=str(repo.records[after]),
                    record=ev.track("After the export"),
                )
            )
            assert fut is not None
            await fut

        second = await queue_and_run(plat, st, state=SyncState.RESYNCING, dids=[repo.did], run=True, schema=schema)
        assert (second.done, second.failed) == (1, {})

    status = (await rows(pool, schema))[repo.did]
    assert (status.state, status.rev) == (SyncState.SYNCHRONIZED, export_rev)
    total = (len(backfilled) + 1) + 1 + (len(backfilled) - len(gone) + 1)
    events = await consume_all(kafka_bootstrap, topic, expect=total)
    assert len(events) == total
    resync = [e for e in events if e.source is Source.RESYNC]
    assert isinstance(resync[-1], SnapshotEvent) and resync[-1].rev == export_rev
    assert len(resync) == len(backfilled) - len(gone) + 1

    read = await project(plat, pool, total)
    book = await ledger(pool, read, [repo.did])
    now_live = live(book, repo.did)
    assert set(now_live) == (set(backfilled) - set(gone)) | {after}
    for path in gone:
        assert book[(repo.did, path)][0] == "deleted"
    uris = [f"at://{repo.did}/{p}" for p in gone]
    deleted_kinds = {
        r["uri"]: r["kind"]
        for r in await pool.fetch(
            f"SELECT uri, kind FROM {read}.changes WHERE uri = ANY($1) AND kind LIKE '%.deleted'", uris
        )
    }
    assert deleted_kinds == {
        uris[0]: "track.deleted",
        uris[1]: "like.deleted",
        uris[2]: "list.deleted",
    }
    titles = {
        r["uri"]: r["title"] for r in await pool.fetch(f"SELECT uri, title FROM {read}.tracks WHERE did = $1", repo.did)
    }
    assert titles[f"at://{repo.did}/{rewritten}"] == "Rewritten"
    assert titles[f"at://{repo.did}/{after}"] == "After the export"
    assert f"at://{repo.did}/{gone[0]}" not in titles
    assert await pool.fetchval(f"SELECT count(*) FROM {read}.likes WHERE uri = $1", uris[1]) == 0
    assert await pool.fetchval(f"SELECT count(*) FROM {read}.lists WHERE uri = $1", uris[2]) == 0


async def test_a_repo_whose_export_lies_is_caught_and_nothing_of_it_is_projected(
    kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    schema = state_schema()
    plat = platform(kafka_bootstrap, database_url, topic)
    registry = CollectorRegistry()
    async with sync_world(1) as world:
        honest, forged, swapped, holed = (make_repo(n, plyr=10, other=40) for n in ("honest", "forged", "swap", "hole"))
        for repo in (honest, forged, swapped, holed):
            world.host(repo)
        mallory = new_key(KeyAlgorithm.K256)
        world.cars[forged.did] = forged.export_car(signer=lambda b: sign(mallory, b))
        parts = swapped.export_blocks()
        track = next(p for p in sorted(swapped.records) if p.startswith("fm.plyr.track/"))
        parts.blocks[swapped.records[track]] = block_of(ev.track("forged"))[1]
        world.cars[swapped.did] = car_of(parts)
        parts = holed.export_blocks()
        del parts.blocks[inner_node(parts)]
        world.cars[holed.did] = car_of(parts)
        ghost = did_for("ghost")
        world.listed["fm.plyr.track"].append(ghost)  # listed, but no DID document

        run = await queue_and_run(
            plat,
            ingest_settings(world),
            state=SyncState.BACKFILLING,
            find=True,
            run=True,
            max_attempts=2,
            registry=registry,
            schema=schema,
        )
    assert run.done == 1
    reasons = {did: reason.split(":")[0] for did, reason in run.failed.items()}
    assert reasons == {
        forged.did: "bad_signature",
        swapped.did: "record_cid_mismatch",
        holed.did: "missing_node",
        ghost: "identity_invalid",
    }
    stored = await rows(pool, schema)
    for did, reason in reasons.items():
        assert stored[did].state is SyncState.BACKFILLING
        row_reason = stored[did].reason or ""
        assert row_reason.startswith(reason) and row_reason.endswith("(attempt 2)")
        assert stored[did].rev is None
    assert stored[honest.did].state is SyncState.SYNCHRONIZED
    for reason in ("bad_signature", "record_cid_mismatch", "missing_node", "identity_invalid"):
        assert sample(registry, "repo_sync_failures_total", reason=reason) == 2

    total = len(in_scope(honest)) + 1
    events = await consume_all(kafka_bootstrap, topic, expect=total)
    assert {e.did for e in events} == {honest.did}
    read = await project(plat, pool, total)
    book = await ledger(pool, read, [honest.did, forged.did, swapped.did, holed.did])
    assert {did for did, _ in book} == {honest.did}
    assert live(book, honest.did) == in_scope(honest)


async def test_one_worker_holds_the_queue(
    database_url: str, pool: asyncpg.Pool, kafka_bootstrap: str, topic: str
) -> None:
    schema = state_schema()
    async with pool.acquire() as conn:
        await migrate(conn, "ingest", schema)
    async with sync_world(1) as world, sync_lock(pool, schema=schema):
        with pytest.raises(SyncBusyError):
            await queue_and_run(
                platform(kafka_bootstrap, database_url, topic),
                ingest_settings(world),
                state=SyncState.RESYNCING,
                dids=[did_for("busy")],
                run=True,
                schema=schema,
            )
    # The request itself was queued for the process that holds the queue.
    assert [s.state for s in (await rows(pool, schema)).values()] == [SyncState.RESYNCING]
