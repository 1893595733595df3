"""Conformance of the supervision core to docs/semantics.md, rule by rule.

Each group of tests is headed by the rules it checks (their headings in docs/semantics.md);
the test of OTP's supervisor_SUITE it mirrors is given where there is one ([SUITE name]).
"""

from __future__ import annotations

import pytest

from rebeam.exits import KILLED, NORMAL, SHUTDOWN, crash, shutdown_with
from rebeam.supervision import (
    BRUTAL_KILL,
    INFINITY,
    AutoShutdown,
    ChildExited,
    ChildRef,
    ChildSpec,
    ChildStarted,
    ChildStatus,
    ChildType,
    DeleteChildRequest,
    Error,
    Ok,
    RestartChildRequest,
    RestartType,
    ShutdownRequest,
    StartChild,
    StartChildRequest,
    StartFailed,
    StopChild,
    Strategy,
    Supervisor,
    SupervisorFlags,
    SupervisorSpecError,
    SupervisorState,
    TerminateChildRequest,
)
from tests.supervision.harness import BOOM, Harness, children

PERMANENT, TRANSIENT, TEMPORARY = (
    RestartType.PERMANENT,
    RestartType.TRANSIENT,
    RestartType.TEMPORARY,
)


def flags(strategy: Strategy = Strategy.ONE_FOR_ONE, **kw: object) -> SupervisorFlags:
    return SupervisorFlags(strategy=strategy, **kw)  # type: ignore[arg-type]


# --- docs/semantics.md, "Flags" ----------------------------------------------------------


class TestFlags_1_1:
    def test_defaults_are_elixirs_three_restarts_in_five_seconds(self) -> None:
        f = SupervisorFlags()
        assert (f.strategy, f.intensity, f.period, f.auto_shutdown) == (
            Strategy.ONE_FOR_ONE,
            3,
            5.0,
            AutoShutdown.NEVER,
        )

    def test_negative_intensity_is_refused(self) -> None:
        with pytest.raises(SupervisorSpecError, match="invalid intensity -1"):
            Supervisor(flags(intensity=-1), children("a"))

    @pytest.mark.parametrize("period", [0, -1.0])
    def test_period_must_be_positive(self, period: float) -> None:
        with pytest.raises(SupervisorSpecError, match="invalid period"):
            Supervisor(flags(period=period), children("a"))

    @pytest.mark.parametrize("mode", [AutoShutdown.ANY_SIGNIFICANT, AutoShutdown.ALL_SIGNIFICANT])
    def test_auto_shutdown_with_simple_one_for_one_is_a_bad_combination(
        self, mode: AutoShutdown
    ) -> None:
        with pytest.raises(SupervisorSpecError, match="bad combination"):
            Supervisor(flags(Strategy.SIMPLE_ONE_FOR_ONE, auto_shutdown=mode), children("t"))


# --- docs/semantics.md, "Child specs" ------------------------------------------------------


class TestChildSpecs_1_2:
    def test_shutdown_defaults_5s_for_workers_infinity_for_supervisors(self) -> None:
        assert ChildSpec("w").shutdown_policy == 5.0
        assert ChildSpec("s", type=ChildType.SUPERVISOR).shutdown_policy == INFINITY

    def test_duplicate_child_names_are_refused(self) -> None:
        with pytest.raises(SupervisorSpecError, match="duplicate child name a"):
            Supervisor(flags(), children("a", "b", "a"))

    def test_significant_permanent_child_is_a_bad_combination(self) -> None:
        spec = ChildSpec("a", significant=True)
        with pytest.raises(SupervisorSpecError, match="significant and permanent"):
            Supervisor(flags(auto_shutdown=AutoShutdown.ANY_SIGNIFICANT), [spec])

    def test_significant_child_with_auto_shutdown_never_is_a_bad_combination(self) -> None:
        spec = ChildSpec("a", restart=TRANSIENT, significant=True)
        with pytest.raises(SupervisorSpecError, match="auto_shutdown is never"):
            Supervisor(flags(), [spec])

    def test_negative_shutdown_is_refused(self) -> None:
        with pytest.raises(SupervisorSpecError, match="invalid shutdown"):
            Supervisor(flags(), [ChildSpec("a", shutdown=-1.0)])

    @pytest.mark.parametrize("count", [0, 2])
    def test_simple_one_for_one_needs_exactly_one_template(self, count: int) -> None:
        with pytest.raises(SupervisorSpecError, match="exactly one child spec"):
            Supervisor(flags(Strategy.SIMPLE_ONE_FOR_ONE), children(*"ab"[:count]))

    def test_every_problem_is_reported_at_once(self) -> None:
        with pytest.raises(SupervisorSpecError) as info:
            Supervisor(flags(intensity=-1, period=0), children("a", "a"))
        assert len(info.value.problems) == 3


# --- docs/semantics.md, "Start order" ------------------------------------------------------


class TestStartOrder_1_3:
    def test_static_children_start_left_to_right_each_after_the_previous(self) -> None:
        h = Harness(flags(), children("a", "b", "c"), auto=False)
        assert h.init() == ["start a#1"]  # b waits until a is up [SUITE order_of_children]
        h.answer(h.unanswered[0], _started("a", 1))
        assert h.trace()[-1] == "start b#1"
        h.answer(h.unanswered[0], _started("b", 1))
        h.answer(h.unanswered[0], _started("c", 1))
        assert h.trace() == ["start a#1", "start b#1", "start c#1", "ready"]
        assert h.sup.state is SupervisorState.RUNNING

    def test_which_children_lists_the_newest_first(self) -> None:
        h = Harness(flags(), children("a", "b"))
        h.init()
        h.send(StartChildRequest("r", ChildSpec("c")))
        assert [c.id for c in h.sup.which_children()] == ["c", "b", "a"]

    def test_a_child_added_by_start_child_is_stopped_first(self) -> None:
        h = Harness(flags(), children("a", "b"))
        h.init()
        h.send(StartChildRequest("r", ChildSpec("c")))
        m = h.mark()
        h.send(ShutdownRequest(SHUTDOWN))
        assert h.stopped(m) == ["stop c#1", "stop b#1", "stop a#1"]


# --- docs/semantics.md, "Restart types" ----------------------------------------------------


REASONS = {
    "normal": NORMAL,
    "shutdown": SHUTDOWN,
    "{shutdown,info}": shutdown_with("bye"),
    "killed": KILLED,
    "crash": BOOM,
}
# The table of "Restart types": restarted or not, for every (restart type, reason) pair.
RESTARTED = {
    PERMANENT: {"normal", "shutdown", "{shutdown,info}", "killed", "crash"},
    TRANSIENT: {"killed", "crash"},
    TEMPORARY: set(),
}


class TestRestartTypes_1_4:
    @pytest.mark.parametrize("restart", [PERMANENT, TRANSIENT, TEMPORARY])
    @pytest.mark.parametrize("reason_name", list(REASONS))
    def test_restart_table(self, restart: RestartType, reason_name: str) -> None:
        h = Harness(flags(), [ChildSpec("a", restart=restart), ChildSpec("b")])
        h.init()
        m = h.mark()
        h.exit("a", REASONS[reason_name])
        expected = reason_name in RESTARTED[restart]
        assert (h.started(m) == ["start a#2"]) is expected
        if not expected:
            assert h.started(m) == []

    def test_transient_clean_exit_keeps_the_spec_undefined(self) -> None:
        h = Harness(flags(), [ChildSpec("a", restart=TRANSIENT)])
        h.init()
        h.exit("a", NORMAL)
        assert h.status("a") is ChildStatus.UNDEFINED

    def test_temporary_child_is_deleted_whatever_the_reason(self) -> None:
        h = Harness(flags(), [ChildSpec("a", restart=TEMPORARY), ChildSpec("b")])
        h.init()
        h.exit("a", BOOM)
        assert h.sup.child("a") is None
        assert h.sup.count_children().specs == 1

    def test_exits_that_are_not_restarted_do_not_count_toward_intensity(self) -> None:
        h = Harness(flags(intensity=0), [ChildSpec("a", restart=TEMPORARY), ChildSpec("b")])
        h.init()
        h.exit("a", BOOM)
        assert h.sup.state is SupervisorState.RUNNING
        assert h.sup.restart_history == ()

    def test_an_exit_of_an_unknown_or_stale_incarnation_is_ignored(self) -> None:
        h = Harness(flags(), children("a"))
        h.init()
        h.crash("a")  # a#1 -> a#2
        m = h.mark()
        assert h.send(ChildExited("a", 1, BOOM)) == []  # late news about a#1
        assert h.send(ChildExited("nobody", 1, BOOM)) == []
        assert h.trace(m) == []

    def test_temporary_bystander_of_one_for_all_is_stopped_and_removed(self) -> None:
        # [SUITE temporary_bystander]
        h = Harness(
            flags(Strategy.ONE_FOR_ALL),
            [ChildSpec("a"), ChildSpec("t", restart=TEMPORARY), ChildSpec("c")],
        )
        h.init()
        m = h.mark()
        h.crash("a")
        assert h.trace(m) == [
            "restarting a: a c",
            "stop c#1",
            "stop t#1",
            "start a#2",
            "start c#2",
        ]
        assert h.sup.child("t") is None

    def test_transient_child_supervisor_that_gave_up_is_not_restarted(self) -> None:
        # A giving-up supervisor exits 'shutdown', clean for transient (the last rule).
        h = Harness(flags(), [ChildSpec("sub", type=ChildType.SUPERVISOR, restart=TRANSIENT)])
        h.init()
        m = h.mark()
        h.exit("sub", SHUTDOWN)
        assert h.started(m) == []


# --- docs/semantics.md, "Intensity", "Giving up and escalation" ----------------------------


class TestIntensity_1_5:
    def test_intensity_zero_gives_up_on_the_first_restart(self) -> None:
        h = Harness(flags(intensity=0), children("a", "b"))
        h.init()
        m = h.mark()
        h.crash("b")
        assert h.trace(m) == ["gave_up b", "stop a#1", "exit shutdown"]
        assert h.sup.state is SupervisorState.TERMINATED

    def test_max_r_restarts_are_allowed_and_the_next_gives_up(self) -> None:
        h = Harness(flags(intensity=2, period=5.0), children("a"))
        h.init()
        h.crash("a")
        h.advance(1.0)
        h.crash("a")
        assert h.sup.state is SupervisorState.RUNNING
        h.advance(1.0)
        m = h.mark()
        h.crash("a")
        assert h.trace(m) == ["gave_up a", "exit shutdown"]

    def test_the_child_is_not_started_again_when_the_limit_is_exceeded(self) -> None:
        h = Harness(flags(intensity=1), children("a"))
        h.init()
        h.crash("a")
        m = h.mark()
        h.crash("a")
        assert h.started(m) == []

    def test_the_window_slides(self) -> None:
        # [SUITE multiple_restarts]: restarts spaced wider than the period never add up.
        h = Harness(flags(intensity=1, period=1.0), children("a"))
        h.init()
        for _ in range(5):
            h.advance(2.1)
            h.crash("a")
        assert h.sup.state is SupervisorState.RUNNING
        assert h.sup.restarts_in_window(h.now) == 1

    def test_the_window_boundary_is_inclusive(self) -> None:
        h = Harness(flags(intensity=1, period=5.0), children("a"))
        h.init()
        h.crash("a")
        h.advance(5.0)  # exactly MaxT later: still inside (now - t <= period)
        h.crash("a")
        assert h.sup.state is SupervisorState.TERMINATED

    def test_a_group_restart_counts_once(self) -> None:
        h = Harness(flags(Strategy.ONE_FOR_ALL, intensity=1), children("a", "b", "c"))
        h.init()
        h.crash("b")  # restarts three children, one restart event
        assert h.sup.restart_history == (0.0,)
        assert h.sup.state is SupervisorState.RUNNING

    def test_every_retry_of_a_failed_restart_counts(self) -> None:
        h = Harness(flags(intensity=3), children("a"))
        h.init()
        h.fail_next_start("a", times=10)
        m = h.mark()
        h.crash("a")
        # decision 1 + retries 2 and 3 are within the limit, the 4th decision gives up
        assert h.started(m) == ["start a#2", "start a#3", "start a#4"]
        assert h.trace(m)[-2:] == ["gave_up a", "exit shutdown"]

    def test_manual_restart_child_is_not_counted(self) -> None:
        h = Harness(flags(intensity=0), [ChildSpec("a", restart=TRANSIENT)])
        h.init()
        h.exit("a", NORMAL)
        h.send(RestartChildRequest("r", "a"))
        assert h.replies["r"] == Ok(ChildRef("a", 2))
        assert h.sup.restart_history == ()

    def test_history_given_by_a_backend_is_honoured(self) -> None:
        # The operator keeps restart history in status across its own restarts.
        sup = Supervisor(flags(intensity=1, period=5.0), children("a"), restart_history=[9.0])
        h = Harness(flags(), children("x"))
        h.sup = sup
        h.now = 10.0
        h.init()
        h.crash("a")
        assert sup.state is SupervisorState.TERMINATED

    def test_giving_up_stops_the_rest_in_reverse_start_order_and_exits_shutdown(self) -> None:
        h = Harness(flags(intensity=0), children("a", "b", "c", "d"))
        h.init()
        m = h.mark()
        h.crash("b")
        assert h.trace(m) == ["gave_up b", "stop d#1", "stop c#1", "stop a#1", "exit shutdown"]
        assert h.terminated_with == SHUTDOWN

    def test_escalation_a_permanent_child_supervisor_that_gave_up_is_restarted(self) -> None:
        # The parent sees the child supervisor's exit 'shutdown' and applies its restart type.
        parent = Harness(flags(intensity=1), [ChildSpec("sub", type=ChildType.SUPERVISOR)])
        child = Harness(flags(intensity=0), children("w"))
        parent.init()
        child.init()
        child.crash("w")
        assert child.terminated_with == SHUTDOWN
        m = parent.mark()
        parent.exit("sub", child.terminated_with)
        assert parent.started(m) == ["start sub#2"]


# --- docs/semantics.md, "Shutdown", "Order of stops" ---------------------------------------


class TestShutdown_1_6:
    def test_each_child_is_stopped_with_its_own_shutdown_policy(self) -> None:
        h = Harness(
            flags(),
            [
                ChildSpec("a", shutdown=BRUTAL_KILL),
                ChildSpec("b", shutdown=2.5),
                ChildSpec("s", type=ChildType.SUPERVISOR),
            ],
        )
        h.init()
        h.send(ShutdownRequest(SHUTDOWN))
        stops = [c for c in h.commands if type(c).__name__ == "StopChild"]
        assert [(c.child, c.shutdown) for c in stops] == [  # type: ignore[union-attr]
            ("s", INFINITY),
            ("b", 2.5),
            ("a", BRUTAL_KILL),
        ]

    def test_stops_are_sequential_each_waits_for_the_previous_exit(self) -> None:
        h = Harness(flags(), children("a", "b", "c"))
        h.init()
        h.auto = False
        assert h.send(ShutdownRequest(SHUTDOWN)) == ["stop c#1"]
        h.answer(h.unanswered[0], ChildExited("c", 1, SHUTDOWN))
        assert h.trace()[-1] == "stop b#1"

    def test_a_child_that_already_died_is_not_stopped_again(self) -> None:
        # [SUITE sup_stop_race]: its pending exit is taken as the stop.
        h = Harness(flags(), children("a", "b", "c"))
        h.init()
        h.auto = False
        h.send(ShutdownRequest(SHUTDOWN))  # waiting for c to stop
        h.send(ChildExited("a", 1, BOOM))  # a dies on its own meanwhile: queued
        h.answer(h.unanswered[0], ChildExited("c", 1, SHUTDOWN))
        h.answer(h.unanswered[0], ChildExited("b", 1, SHUTDOWN))
        assert h.stopped() == ["stop c#1", "stop b#1"]
        assert h.trace()[-1] == "exit shutdown"

    def test_simple_one_for_one_stops_all_children_at_once(self) -> None:
        h = Harness(flags(Strategy.SIMPLE_ONE_FOR_ONE), children("t"))
        h.init()
        for r in range(3):
            h.send(StartChildRequest(r))
        h.auto = False
        assert h.send(ShutdownRequest(SHUTDOWN)) == ["stop t-1#1", "stop t-2#1", "stop t-3#1"]
        for command in list(h.unanswered):
            h.answer(command, ChildExited(command.child, 1, SHUTDOWN))
        assert h.trace()[-1] == "exit shutdown"


# --- docs/semantics.md, "Strategies" -------------------------------------------------------


class TestStrategies_1_7:
    def test_one_for_one_restarts_only_the_dead_child(self) -> None:
        h = Harness(flags(), children("a", "b", "c"))
        h.init()
        m = h.mark()
        h.crash("b")
        assert h.trace(m) == ["restarting b: b", "start b#2"]

    def test_one_for_all_stops_the_others_newest_first_then_starts_all_in_order(self) -> None:
        h = Harness(flags(Strategy.ONE_FOR_ALL), children("a", "b", "c", "d"))
        h.init()
        m = h.mark()
        h.crash("b")
        assert h.trace(m) == [
            "restarting b: a b c d",
            "stop d#1",
            "stop c#1",
            "stop a#1",
            "start a#2",
            "start b#2",
            "start c#2",
            "start d#2",
        ]

    def test_one_for_all_also_starts_children_that_were_terminated_by_hand(self) -> None:
        # [SUITE tree]: a child stopped with terminate_child runs again after a group restart.
        h = Harness(flags(Strategy.ONE_FOR_ALL), children("a", "b", "c"))
        h.init()
        h.send(TerminateChildRequest("t", "c"))
        m = h.mark()
        h.crash("a")
        assert h.started(m) == ["start a#2", "start b#2", "start c#2"]
        assert h.sup.count_children().active == 3

    def test_rest_for_one_restarts_the_dead_child_and_those_after_it(self) -> None:
        # [SUITE order_of_children]: killing the 3rd of 5 stops 5th then 4th, starts 3, 4, 5.
        h = Harness(flags(Strategy.REST_FOR_ONE), children("c1", "c2", "c3", "c4", "c5"))
        h.init()
        m = h.mark()
        h.crash("c3")
        assert h.trace(m) == [
            "restarting c3: c3 c4 c5",
            "stop c5#1",
            "stop c4#1",
            "start c3#2",
            "start c4#2",
            "start c5#2",
        ]

    def test_simple_one_for_one_restarts_with_the_original_arguments(self) -> None:
        h = Harness(flags(Strategy.SIMPLE_ONE_FOR_ONE), [ChildSpec("t", args={"base": 1})])
        h.init()
        h.send(StartChildRequest("r", args={"n": 7}))
        first = h.commands[-2]
        h.crash("t-1")
        restarted = h.commands[-1]
        assert first.spec.args == restarted.spec.args == {"base": 1, "n": 7}  # type: ignore[union-attr]

    def test_a_sibling_death_during_a_group_restart_is_absorbed(self) -> None:
        # Two children dying together under one_for_all cause one restart.
        h = Harness(flags(Strategy.ONE_FOR_ALL, intensity=5), children("a", "b", "c"))
        h.init()
        h.auto = False
        h.crash("a")  # -> stop c#1 outstanding
        h.send(ChildExited("b", 1, BOOM))  # b dies too before we reach it
        h.answer(h.unanswered[0], ChildExited("c", 1, SHUTDOWN))
        for _ in range(3):
            h.answer(h.unanswered[0], _started(*_child_inc(h.unanswered[0])))
        assert h.stopped() == ["stop c#1"]  # b's exit was taken as its stop
        assert h.started()[-3:] == ["start a#2", "start b#2", "start c#2"]
        assert h.sup.restart_history == (0.0,)


# --- docs/semantics.md, "Start failures at init", "Start failures during a restart" --------


class TestStartFailures_1_8:
    def test_init_failure_stops_the_started_ones_in_reverse_and_starts_no_more(self) -> None:
        h = Harness(flags(), children("a", "b", "c", "d"))
        h.fail_next_start("c")
        assert h.init() == [
            "start a#1",
            "start b#1",
            "start c#1",
            "stop b#1",
            "stop a#1",
            "init_failed c",
        ]
        assert h.sup.state is SupervisorState.TERMINATED

    def test_ignore_at_init_keeps_the_spec_undefined(self) -> None:
        # [SUITE sup_start_ignore_child]
        h = Harness(flags(), children("a", "b"))
        h.ignore_next_start("a")
        h.init()
        assert h.status("a") is ChildStatus.UNDEFINED
        assert h.trace()[-1] == "ready"

    def test_ignore_at_init_drops_a_temporary_child(self) -> None:
        # [SUITE sup_start_ignore_temporary_child]
        h = Harness(flags(), [ChildSpec("a", restart=TEMPORARY)])
        h.ignore_next_start("a")
        h.init()
        assert h.sup.child("a") is None

    def test_failed_restart_marks_restarting_and_retries_without_delay(self) -> None:
        h = Harness(flags(intensity=5), children("a"))
        h.init()
        h.fail_next_start("a", times=2)
        m = h.mark()
        h.crash("a")
        assert h.trace(m) == [
            "restarting a: a",
            "start a#2",
            "restarting a: a",
            "start a#3",
            "restarting a: a",
            "start a#4",
        ]
        assert h.status("a") is ChildStatus.RUNNING

    def test_queued_requests_are_served_before_the_retry(self) -> None:
        h = Harness(flags(intensity=5), children("a", "b"))
        h.init()
        h.auto = False
        h.crash("a")  # start a#2 outstanding
        h.send(TerminateChildRequest("t", "b"))  # queued behind the restart
        h.answer(h.unanswered[0], _failed("a", 2))
        # The terminate request was in the mailbox before the retry: it runs first.
        assert h.trace()[-1] == "stop b#1"

    def test_terminate_child_ends_a_restart_loop(self) -> None:
        # [SUITE hanging_restart_loop]
        h = Harness(flags(intensity=50), children("a"))
        h.init()
        h.auto = False
        h.crash("a")
        h.send(TerminateChildRequest("t", "a"))  # queued behind the restart
        h.answer(h.unanswered[0], _failed("a", 2))  # retry queued after the request
        assert h.replies["t"] == Ok()
        assert h.status("a") is ChildStatus.UNDEFINED
        assert h.started() == ["start a#1", "start a#2"]  # the retry found nothing to do

    def test_one_for_all_retry_after_another_child_failed_restarts_everything(self) -> None:
        # [SUITE one_for_all_other_child_fails_restart]
        h = Harness(flags(Strategy.ONE_FOR_ALL, intensity=5), children("a", "b", "c"))
        h.init()
        h.fail_next_start("b")
        m = h.mark()
        h.crash("a")
        assert h.trace(m) == [
            "restarting a: a b c",
            "stop c#1",
            "stop b#1",
            "start a#2",
            "start b#2",  # fails: b restarting, c not started
            "restarting b: a b c",
            "stop a#2",  # the just-restarted a is stopped again
            "start a#3",
            "start b#3",
            "start c#2",
        ]

    def test_rest_for_one_retry_restarts_only_the_failed_child_and_after(self) -> None:
        # [SUITE rest_for_one_other_child_fails_restart]
        h = Harness(flags(Strategy.REST_FOR_ONE, intensity=5), children("a", "b", "c"))
        h.init()
        h.fail_next_start("b")
        m = h.mark()
        h.crash("a")
        assert h.trace(m) == [
            "restarting a: a b c",
            "stop c#1",
            "stop b#1",
            "start a#2",
            "start b#2",
            "restarting b: b c",
            "start b#3",
            "start c#2",
        ]

    def test_children_after_a_failed_group_start_are_undefined_meanwhile(self) -> None:
        # [SUITE hanging_restart_loop_rest_for_one]
        h = Harness(flags(Strategy.REST_FOR_ONE, intensity=5), children("a", "b", "c"))
        h.init()
        h.auto = False
        h.crash("b")
        h.answer(h.unanswered[0], ChildExited("c", 1, SHUTDOWN))
        h.answer(h.unanswered[0], _failed("b", 2))
        # The retry is now running; look at the state it found.
        statuses = {c.id: c.status for c in h.sup.which_children()}
        assert statuses == {
            "a": ChildStatus.RUNNING,
            "b": ChildStatus.STARTING,
            "c": ChildStatus.UNDEFINED,
        }

    def test_ignore_during_restart_drops_a_simple_one_for_one_child(self) -> None:
        # [SUITE simple_one_for_one_restart_ignore]
        h = Harness(flags(Strategy.SIMPLE_ONE_FOR_ONE), children("t"))
        h.init()
        h.send(StartChildRequest("r"))
        h.ignore_next_start("t-1")
        h.crash("t-1")
        assert h.sup.which_children() == []

    def test_a_process_that_dies_before_it_is_up_failed_to_start(self) -> None:
        h = Harness(flags(), children("a", "b"), auto=False)
        h.init()
        h.answer(h.unanswered[0], ChildExited("a", 1, crash(exit_code=3)))
        assert h.trace()[-1] == "init_failed a"


# --- docs/semantics.md, "Management API" ---------------------------------------------------


class TestManagementApi_1_9:
    def _running(self, *ids: str, **kw: object) -> Harness:
        h = Harness(flags(**kw), children(*ids))  # type: ignore[arg-type]
        h.init()
        return h

    def test_start_child_appends_and_answers_with_the_incarnation(self) -> None:
        h = self._running("a")
        h.send(StartChildRequest("r", ChildSpec("b")))
        assert h.replies["r"] == Ok(ChildRef("b", 1))
        assert h.sup.count_children().active == 2

    def test_start_child_of_a_running_id_is_already_started(self) -> None:
        h = self._running("a")
        h.send(StartChildRequest("r", ChildSpec("a")))
        assert h.replies["r"] == Error(("already_started", 1))

    def test_start_child_of_a_stopped_id_is_already_present(self) -> None:
        h = self._running("a")
        h.send(TerminateChildRequest("t", "a"))
        h.send(StartChildRequest("r", ChildSpec("a")))
        assert h.replies["r"] == Error("already_present")

    def test_start_child_failure_discards_the_spec(self) -> None:
        # [SUITE sup_start_child_returns_error]
        h = self._running("a")
        h.fail_next_start("b")
        h.send(StartChildRequest("r", ChildSpec("b")))
        assert h.replies["r"] == Error(BOOM)
        assert h.sup.child("b") is None

    def test_start_child_with_an_invalid_spec_is_refused(self) -> None:
        h = self._running("a")
        h.send(StartChildRequest("r", ChildSpec("b", significant=True)))
        result = h.replies["r"]
        assert isinstance(result, Error)
        assert "bad combination" in result.reason

    def test_start_child_ignore_answers_none_and_keeps_the_spec(self) -> None:
        h = self._running("a")
        h.ignore_next_start("b")
        h.send(StartChildRequest("r", ChildSpec("b")))
        assert h.replies["r"] == Ok(None)
        assert h.status("b") is ChildStatus.UNDEFINED

    def test_terminate_child_stops_it_never_restarts_and_keeps_the_spec(self) -> None:
        h = self._running("a", "b")
        m = h.mark()
        h.send(TerminateChildRequest("t", "a"))
        assert h.trace(m) == ["stop a#1", "reply t: ok None"]
        assert h.status("a") is ChildStatus.UNDEFINED
        assert h.sup.restart_history == ()

    def test_terminate_child_twice_is_ok_unknown_is_not_found(self) -> None:
        h = self._running("a")
        h.send(TerminateChildRequest("t1", "a"))
        h.send(TerminateChildRequest("t2", "a"))
        h.send(TerminateChildRequest("t3", "zzz"))
        assert (h.replies["t2"], h.replies["t3"]) == (Ok(), Error("not_found"))

    def test_terminate_child_deletes_a_temporary_spec(self) -> None:
        h = Harness(flags(), [ChildSpec("a", restart=TEMPORARY)])
        h.init()
        h.send(TerminateChildRequest("t", "a"))
        assert h.sup.child("a") is None

    def test_restart_child_only_when_undefined(self) -> None:
        h = self._running("a")
        h.send(RestartChildRequest("r1", "a"))
        h.send(RestartChildRequest("r2", "nope"))
        h.send(TerminateChildRequest("t", "a"))
        h.send(RestartChildRequest("r3", "a"))
        assert h.replies["r1"] == Error("running")
        assert h.replies["r2"] == Error("not_found")
        assert h.replies["r3"] == Ok(ChildRef("a", 2))

    def test_restart_child_under_one_for_all_does_not_restart_siblings(self) -> None:
        h = self._running("a", "b", strategy=Strategy.ONE_FOR_ALL)
        h.send(TerminateChildRequest("t", "a"))
        m = h.mark()
        h.send(RestartChildRequest("r", "a"))
        assert h.trace(m) == ["start a#2", "reply r: ok a#2"]

    def test_restart_child_failure_leaves_it_undefined(self) -> None:
        h = self._running("a")
        h.send(TerminateChildRequest("t", "a"))
        h.fail_next_start("a")
        h.send(RestartChildRequest("r", "a"))
        assert h.replies["r"] == Error(BOOM)
        assert h.status("a") is ChildStatus.UNDEFINED

    def test_delete_child_only_when_undefined(self) -> None:
        h = self._running("a", "b")
        h.send(DeleteChildRequest("d1", "a"))
        h.send(TerminateChildRequest("t", "a"))
        h.send(DeleteChildRequest("d2", "a"))
        h.send(DeleteChildRequest("d3", "a"))
        assert h.replies["d1"] == Error("running")
        assert h.replies["d2"] == Ok()
        assert h.replies["d3"] == Error("not_found")

    def test_restart_and_delete_on_a_restarting_child(self) -> None:
        h = Harness(flags(intensity=9), children("a", "b"))
        h.init()
        h.auto = False
        h.crash("a")
        h.send(RestartChildRequest("r", "a"))
        h.send(DeleteChildRequest("d", "a"))
        h.answer(h.unanswered[0], _failed("a", 2))  # a restarting; requests run before retry
        assert h.replies["r"] == Error("restarting")
        assert h.replies["d"] == Error("restarting")

    def test_count_children_of_a_static_supervisor(self) -> None:
        h = Harness(flags(), [ChildSpec("a"), ChildSpec("s", type=ChildType.SUPERVISOR)])
        h.init()
        h.send(TerminateChildRequest("t", "a"))
        counts = h.sup.count_children()
        assert (counts.specs, counts.active, counts.supervisors, counts.workers) == (2, 1, 1, 1)

    def test_requests_left_when_the_supervisor_exits_are_answered_noproc(self) -> None:
        h = Harness(flags(intensity=0), children("a"))
        h.init()
        h.auto = False
        h.send(ShutdownRequest(SHUTDOWN))  # stop a#1 outstanding
        h.send(StartChildRequest("late", ChildSpec("b")))
        h.answer(h.unanswered[0], ChildExited("a", 1, SHUTDOWN))
        assert h.replies["late"] == Error("noproc")


# --- docs/semantics.md, "Dynamic children" -------------------------------------------------


class TestSimpleOneForOne_1_10:
    def _simple(self, **kw: object) -> Harness:
        h = Harness(flags(Strategy.SIMPLE_ONE_FOR_ONE, **kw), children("t"))  # type: ignore[arg-type]
        h.init()
        return h

    def test_nothing_starts_at_init(self) -> None:
        assert Harness(flags(Strategy.SIMPLE_ONE_FOR_ONE), children("t")).init() == ["ready"]

    def test_extra_list_args_are_appended_mapping_args_merged(self) -> None:
        h = Harness(flags(Strategy.SIMPLE_ONE_FOR_ONE), [ChildSpec("t", args=[1, 2])])
        h.init()
        h.send(StartChildRequest("r", args=[3]))
        assert h.commands[-2].spec.args == [1, 2, 3]  # type: ignore[union-attr]

    def test_incompatible_args_are_refused_clearly(self) -> None:
        h = Harness(flags(Strategy.SIMPLE_ONE_FOR_ONE), [ChildSpec("t", args=[1])])
        h.init()
        h.send(StartChildRequest("r", args={"a": 1}))
        result = h.replies["r"]
        assert isinstance(result, Error)
        assert "cannot combine" in result.reason

    def test_max_children(self) -> None:
        h = self._simple(max_children=2)
        for r in "abc":
            h.send(StartChildRequest(r))
        assert h.replies["c"] == Error("max_children")

    def test_ignore_stores_nothing(self) -> None:
        h = self._simple()
        h.ignore_next_start("t-1")
        h.send(StartChildRequest("r"))
        assert h.replies["r"] == Ok(None)
        assert h.sup.which_children() == []

    def test_restart_and_delete_child_are_not_for_simple(self) -> None:
        h = self._simple()
        h.send(StartChildRequest("r"))
        h.send(RestartChildRequest("x", "t-1"))
        h.send(DeleteChildRequest("y", "t-1"))
        assert h.replies["x"] == h.replies["y"] == Error("simple_one_for_one")

    def test_terminate_child_removes_it_a_past_child_is_ok_a_stranger_not_found(self) -> None:
        h = self._simple()
        h.send(StartChildRequest("r"))
        h.send(TerminateChildRequest("t1", "t-1"))
        h.send(TerminateChildRequest("t2", "t-1"))
        h.send(TerminateChildRequest("t3", "t-99"))
        assert h.sup.which_children() == []
        assert (h.replies["t1"], h.replies["t2"], h.replies["t3"]) == (
            Ok(),
            Ok(),
            Error("not_found"),
        )

    def test_a_child_that_is_not_restarted_is_forgotten(self) -> None:
        h = Harness(flags(Strategy.SIMPLE_ONE_FOR_ONE), [ChildSpec("t", restart=TRANSIENT)])
        h.init()
        h.send(StartChildRequest("r"))
        h.exit("t-1", NORMAL)
        assert h.sup.which_children() == []

    def test_count_children_counts_restarting_as_stored_not_active(self) -> None:
        # [SUITE count_restarting_children]
        h = self._simple(intensity=9)
        for r in "abc":
            h.send(StartChildRequest(r))
        h.auto = False
        h.crash("t-1")
        h.answer(h.unanswered[0], _failed("t-1", 2))  # restarting; the retry starts t-1#3
        counts = h.sup.count_children()
        assert (counts.specs, counts.workers) == (1, 3)
        assert counts.active == 3  # t-1 is 'starting' again, not 'restarting'

    def test_dynamic_children_get_unique_ids_never_reused(self) -> None:
        h = self._simple()
        for r in "ab":
            h.send(StartChildRequest(r))
        h.send(TerminateChildRequest("t", "t-1"))
        h.send(StartChildRequest("c"))
        assert [c.id for c in h.sup.which_children()] == ["t-2", "t-3"]


# --- docs/semantics.md, "Significant children and auto_shutdown" ---------------------------


class TestAutoShutdown_1_11:
    def test_any_significant_ends_the_supervisor_when_one_ends_by_itself(self) -> None:
        h = Harness(
            flags(auto_shutdown=AutoShutdown.ANY_SIGNIFICANT),
            [ChildSpec("w"), ChildSpec("driver", restart=TRANSIENT, significant=True)],
        )
        h.init()
        m = h.mark()
        h.exit("driver", NORMAL)
        assert h.trace(m) == ["auto_shutdown driver", "stop w#1", "exit shutdown"]

    def test_an_abnormal_exit_of_a_transient_significant_child_is_restarted_instead(self) -> None:
        h = Harness(
            flags(auto_shutdown=AutoShutdown.ANY_SIGNIFICANT),
            [ChildSpec("driver", restart=TRANSIENT, significant=True)],
        )
        h.init()
        m = h.mark()
        h.crash("driver")
        assert h.started(m) == ["start driver#2"]

    def test_a_temporary_significant_child_triggers_on_any_reason(self) -> None:
        h = Harness(
            flags(auto_shutdown=AutoShutdown.ANY_SIGNIFICANT),
            [ChildSpec("w"), ChildSpec("job", restart=TEMPORARY, significant=True)],
        )
        h.init()
        h.crash("job")
        assert h.sup.state is SupervisorState.TERMINATED

    def test_all_significant_waits_for_the_last_one(self) -> None:
        h = Harness(
            flags(auto_shutdown=AutoShutdown.ALL_SIGNIFICANT),
            [
                ChildSpec("w"),
                ChildSpec("j1", restart=TEMPORARY, significant=True),
                ChildSpec("j2", restart=TEMPORARY, significant=True),
            ],
        )
        h.init()
        h.exit("j1", NORMAL)
        assert h.sup.state is SupervisorState.RUNNING
        h.exit("j2", NORMAL)
        assert h.sup.state is SupervisorState.TERMINATED

    def test_terminate_child_of_a_significant_child_never_shuts_down(self) -> None:
        h = Harness(
            flags(auto_shutdown=AutoShutdown.ANY_SIGNIFICANT),
            [ChildSpec("w"), ChildSpec("j", restart=TRANSIENT, significant=True)],
        )
        h.init()
        h.send(TerminateChildRequest("t", "j"))
        assert h.sup.state is SupervisorState.RUNNING

    def test_a_significant_bystander_of_a_group_restart_never_shuts_down(self) -> None:
        h = Harness(
            flags(Strategy.ONE_FOR_ALL, auto_shutdown=AutoShutdown.ANY_SIGNIFICANT),
            [ChildSpec("w"), ChildSpec("j", restart=TEMPORARY, significant=True)],
        )
        h.init()
        h.crash("w")
        assert h.sup.state is SupervisorState.RUNNING

    def test_non_significant_children_never_trigger(self) -> None:
        h = Harness(
            flags(auto_shutdown=AutoShutdown.ANY_SIGNIFICANT),
            [
                ChildSpec("w", restart=TEMPORARY),
                ChildSpec("j", restart=TEMPORARY, significant=True),
            ],
        )
        h.init()
        h.exit("w", NORMAL)
        assert h.sup.state is SupervisorState.RUNNING

    def test_significant_escalation_ends_a_parent_with_auto_shutdown(self) -> None:
        # [SUITE significant_escalation]: a transient significant child supervisor gives up
        # (exit shutdown) -> not restarted -> the parent auto-shuts down.
        parent = Harness(
            flags(auto_shutdown=AutoShutdown.ANY_SIGNIFICANT),
            [
                ChildSpec("w"),
                ChildSpec("sub", type=ChildType.SUPERVISOR, restart=TRANSIENT, significant=True),
            ],
        )
        parent.init()
        parent.exit("sub", SHUTDOWN)
        assert parent.terminated_with == SHUTDOWN


# --- docs/semantics.md, "One death, one decision" ------------------------------------------


class TestImplementationNotes_1_13:
    def test_each_death_is_handled_exactly_once(self) -> None:
        h = Harness(flags(intensity=9), children("a"))
        h.init()
        h.crash("a")
        m = h.mark()
        h.send(ChildExited("a", 1, BOOM))  # the same death reported again
        assert h.trace(m) == []
        assert len(h.sup.restart_history) == 1

    def test_incarnations_continue_from_what_a_backend_kept(self) -> None:
        sup = Supervisor(flags(), children("a"), incarnations={"a": 41})
        assert [c.incarnation for c in sup.init(0.0)] == [42]  # type: ignore[union-attr]


def _started(child: str, inc: int) -> ChildStarted:
    return ChildStarted(child, inc)


def _failed(child: str, inc: int) -> StartFailed:
    return StartFailed(child, inc, BOOM)


def _child_inc(command: StartChild | StopChild) -> tuple[str, int]:
    return command.child, command.incarnation
