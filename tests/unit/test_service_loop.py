"""The service loop and its commit policies on fake clients: what is committed, when, and what is not."""

from __future__ import annotations

import threading

import orjson
import pytest
from confluent_kafka import KafkaError

from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import agrawal_frame, events_from_frame
from streams.services.loop.policies import AfterAcks, Periodic, Transactional
from streams.services.loop.service_loop import LoopStats, ServiceLoop
from streams.services.loop.step import LoopContext, Step, Subscribe
from streams.services.score.handler import ScoreHandler
from streams.services.score.step import ScoreStep, score_loop
from streams.settings import Settings
from tests.unit.fake_kafka import TOPIC, FakeClients, FakeRecord, Turn, kafka_error, records

SETTINGS = Settings(kafka_bootstrap="x:1", session_timeout_s=0.5)


class Echo(Step):
    """Emits one output per record; remembers which batches were reported done."""

    def __init__(self, fail_on: set[int] | None = None) -> None:
        self.done: list[list[int]] = []
        self.fail_on = fail_on or set()

    def process(self, batch, context: LoopContext) -> list[int]:
        for record in batch:
            if record.offset() in self.fail_on:
                raise RuntimeError(f"poison at {record.offset()}")
            context.emit("out", None, record.value(), None)
        return [r.offset() for r in batch]

    def committed(self, result, seconds: float) -> None:
        self.done.append(result)


def run(turns: list[Turn], policy=None, step: Step | None = None) -> tuple[FakeClients, Step, LoopStats]:
    stopping = threading.Event()
    clients = FakeClients(turns, stopping)
    step = step or Echo()
    stats = LoopStats()
    loop = ServiceLoop(
        "test",
        clients,
        step,
        policy or AfterAcks(),
        Subscribe([TOPIC]),
        stopping,
        stats=stats,
        commit_deadline_s=0.5,
    )
    loop.run()
    return clients, step, stats


def test_offsets_are_committed_only_after_the_outputs_are_acknowledged() -> None:
    def still_unacked(consumer) -> None:
        # the first batch's outputs wait for acks while the second batch is fetched
        assert consumer.commits == []

    clients, step, _ = run([Turn(records(0, 0, 3)), Turn(records(0, 3, 2), during=still_unacked)])

    assert clients.consumer.committed_offsets() == {(TOPIC, 0): 5}
    assert [offsets for offsets, _ in clients.consumer.commits] == [[(TOPIC, 0, 3)], [(TOPIC, 0, 5)]]
    assert len(clients.producer.produced) == 5
    assert step.done == [[0, 1, 2], [3, 4]]
    assert clients.consumer.closed


def test_a_failed_delivery_rewinds_the_batch_and_the_one_fetched_after_it() -> None:
    def fail_first_batch(consumer) -> None:
        clients.producer.fail_next = 1

    stopping = threading.Event()
    turns = [Turn(records(0, 0, 3)), Turn(records(1, 0, 2), during=fail_first_batch), Turn(records(0, 0, 3))]
    clients = FakeClients(turns, stopping)
    step = Echo()
    ServiceLoop("t", clients, step, AfterAcks(), Subscribe([TOPIC]), stopping).run()

    # the pending batch (partition 0 from 0) and the fetched one (partition 1 from 0) are read again
    assert sorted(clients.consumer.seeks) == [(TOPIC, 0, 0), (TOPIC, 1, 0)]
    assert clients.consumer.committed_offsets() == {(TOPIC, 0): 3}
    assert step.done == [[0, 1, 2]], "only the batch read again after the rewind is reported"


def test_a_commit_refused_in_the_revoke_callback_is_not_fatal_and_the_next_batch_is_processed() -> None:
    """The lost-session crash: UNKNOWN_MEMBER_ID from the synchronous commit inside on_revoke."""

    def session_lost_then_revoked(consumer) -> None:
        consumer.commit_errors.append(kafka_error(KafkaError.UNKNOWN_MEMBER_ID))
        consumer.revoke()  # settles the pending batch synchronously: the commit is refused
        consumer.reassign()

    clients, step, stats = run(
        [Turn(records(0, 0, 4)), Turn(records(0, 0, 4) + records(1, 0, 1), during=session_lost_then_revoked)]
    )

    assert stats.commits.refused == 1
    # the refused batch was not committed; the batch after the rejoin was, and processed in full
    assert [sorted(offsets) for offsets, _ in clients.consumer.commits] == [[(TOPIC, 0, 4), (TOPIC, 1, 1)]]
    assert step.done == [[0, 1, 2, 3], [0, 1, 2, 3, 0]]
    assert clients.consumer.closed


@pytest.mark.parametrize("code", [KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS])
def test_every_group_moved_on_refusal_is_counted_not_raised(code: int) -> None:
    def refuse(consumer) -> None:
        consumer.commit_errors.append(kafka_error(code))

    clients, _, stats = run([Turn(records(0, 0, 2)), Turn([], during=refuse)])

    assert stats.commits.refused == 1
    assert clients.consumer.commits == []


def test_a_transient_commit_error_is_retried_until_it_goes_through() -> None:
    def broker_blip(consumer) -> None:
        consumer.commit_errors += [
            kafka_error(KafkaError._TRANSPORT),
            kafka_error(KafkaError.REQUEST_TIMED_OUT),
        ]

    clients, _, stats = run([Turn(records(0, 0, 2)), Turn([], during=broker_blip)])

    assert stats.commits.retried == 2
    assert clients.consumer.committed_offsets() == {(TOPIC, 0): 2}


def test_lost_partitions_drop_the_pending_batch_without_a_commit() -> None:
    clients, step, _ = run([Turn(records(0, 0, 3)), Turn([], during=lambda c: c.lose())])

    assert clients.consumer.commits == []
    assert step.done == []


def test_stopping_while_a_batch_waits_for_acks_commits_nothing() -> None:
    stopping = threading.Event()
    clients = FakeClients([Turn(records(0, 0, 3))], stopping)

    def stop_before_acks(callbacks):
        consumer, producer = FakeClients.__call__(clients, callbacks)
        producer.hold = 10**6  # the broker never acknowledges
        return consumer, producer

    step = Echo()
    ServiceLoop("t", stop_before_acks, step, AfterAcks(), Subscribe([TOPIC]), stopping).run()

    assert clients.consumer.commits == [], (
        "unacknowledged outputs: the batch must be read again after a restart"
    )
    assert step.done == []
    assert clients.consumer.closed


def test_periodic_commits_what_was_read_and_settles_revoked_partitions() -> None:
    policy = Periodic(every_s=0.0)
    clients, _, _ = run(
        [Turn(records(0, 0, 3)), Turn(records(1, 0, 2)), Turn([], during=lambda c: c.revoke())], policy=policy
    )

    assert clients.consumer.committed_offsets() == {(TOPIC, 0): 3, (TOPIC, 1): 2}


def test_statistics_give_each_assigned_partition_its_lag() -> None:
    stats_text = orjson.dumps(
        {
            "topics": {
                TOPIC: {
                    "partitions": {
                        "0": {"consumer_lag": 120, "hi_offset": 200, "committed_offset": 80},
                        "1": {"consumer_lag": -1, "hi_offset": -1, "committed_offset": -1},
                        "-1": {"consumer_lag": -1},
                    }
                }
            }
        }
    ).decode()
    stopping = threading.Event()
    clients = FakeClients([Turn(records(0, 0, 2))], stopping)
    loop = ServiceLoop("t", clients, Echo(), AfterAcks(), Subscribe([TOPIC]), stopping)

    def report(consumer) -> None:
        loop._on_statistics(stats_text)

    clients.consumer.turns.append(Turn([], during=report))
    loop.run()

    lag = loop.stats.lag
    assert lag[(TOPIC, 0)].lag == 120 and lag[(TOPIC, 0)].end == 200
    assert lag[(TOPIC, 1)].lag == 0, "no position yet reads as 0, never negative"
    assert (TOPIC, -1) not in lag
    assert loop.stats.lag_seconds((TOPIC, 0), now_s=1_700_000_010.0) == pytest.approx(10.0)


def test_a_transaction_per_batch_commits_offsets_with_the_outputs() -> None:
    class TxnProducer:
        def __init__(self, inner):
            self.inner, self.calls, self.offsets = inner, [], []

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __len__(self):
            return len(self.inner)

        def init_transactions(self, timeout):
            self.calls.append("init")

        def begin_transaction(self):
            self.calls.append("begin")

        def send_offsets_to_transaction(self, offsets, metadata, timeout):
            self.offsets.append([(tp.partition, tp.offset) for tp in offsets])

        def commit_transaction(self, timeout):
            self.calls.append("commit")

    stopping = threading.Event()
    fakes = FakeClients([Turn(records(0, 0, 2)), Turn(records(0, 2, 1))], stopping)
    made = {}

    def clients(callbacks):
        consumer, producer = fakes(callbacks)
        made["producer"] = TxnProducer(producer)
        return consumer, made["producer"]

    step = Echo()
    ServiceLoop("t", clients, step, Transactional(timeout_s=1.0), Subscribe([TOPIC]), stopping).run()

    assert made["producer"].calls == ["init", "begin", "commit", "begin", "commit"]
    assert made["producer"].offsets == [[(0, 2)], [(0, 3)]]
    assert fakes.consumer.commits == [], "offsets travel inside the transaction, never as a plain commit"
    assert step.done == [[0, 1], [2]]


@pytest.fixture(scope="module")
def event_records() -> list[FakeRecord]:
    frame = agrawal_frame(40, seed=5, classification_function=2).drop(columns=["approved"])
    return [
        FakeRecord(TOPIC, i % 2, i // 2, value_=orjson.dumps(e))
        for i, e in enumerate(events_from_frame(frame, prefix="s"))
    ]


class FailingOn(ScoreHandler):
    """A handler with a defect that only one event triggers (an error the handler did not foresee)."""

    poison = "s-7"

    def handle(self, records, emit):
        if any(orjson.loads(r.value())["event_id"] == self.poison for r in records):
            raise OverflowError("a defect triggered by one event")
        return super().handle(records, emit)


def test_the_score_loop_dead_letters_only_the_event_a_defect_fails_on(
    agrawal_bundle: ModelBundle, event_records: list[FakeRecord]
) -> None:
    stopping = threading.Event()
    clients = FakeClients([Turn(event_records[:20]), Turn(event_records[20:])], stopping)
    step = ScoreStep(FailingOn(SETTINGS, agrawal_bundle))
    score_loop(SETTINGS, step, stopping, clients=clients).run()

    produced = clients.producer.produced
    predicted = {orjson.loads(v)["event_id"] for t, _, v in produced if t == SETTINGS.topic_predictions}
    dead = [v for t, _, v in produced if t == SETTINGS.topic_dlq]
    assert step.isolated == 1
    assert [orjson.loads(v)["event_id"] for v in dead] == ["s-7"]
    assert predicted == {f"s-{i}" for i in range(40)} - {"s-7"}
    assert clients.consumer.committed_offsets() == {(TOPIC, 0): 20, (TOPIC, 1): 20}
