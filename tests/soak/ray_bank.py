"""The soak's bank on Ray actors, the peer it is compared with (docs/soak.md, "A peer: Ray").

Run by the benchmark environment's Python (``.cache/venv-bench``, with Ray; Ray is never a
project dependency) as a child of ``python -m tests.soak --ray``, which injects the faults,
watches the process table and checks the files this writes. The same accounts, tellers and
auditor as tests/soak/app/bank, with the same journals and logs, on Ray's own recovery:
every actor has ``max_restarts=-1`` (restarted however often it dies) and
``max_task_retries=-1`` (a call to an actor that died is sent again to its next incarnation).
Ray has no durable message, so every transfer is a call; everything else is as in the bank.

Commands, one JSON line each on stdin: ``{"op": "rate", "rate": r}``, ``{"op": "drain"}``
(answers ``{"drained_in": s, "live_total": n}`` on stdout), ``{"op": "stop"}``. Once every
actor runs it prints ``{"ready": true}``."""

import asyncio
import json
import os
import random
import sys
import time
import uuid
from pathlib import Path

import ray
from bank.journal import Journal, read  # the bank's own (stdlib only): the same files

NAMESPACE = "soak"
OPTIONS = {"max_restarts": -1, "max_task_retries": -1, "num_cpus": 0}
CALL_TIMEOUT = 2.0
DEADLINE = 10.0  # seconds a transfer is retried before it is given up
BACKOFF = (0.05, 0.1, 0.2, 0.4)
FLUSH_EVERY = 0.2
DRAIN_DEADLINE = 90.0


def born(directory, path):
    journal = Journal(Path(directory) / "births.jsonl")
    try:
        actor = ray.get_runtime_context().get_actor_id()
        journal.append({"path": path, "pid": actor, "os_pid": os.getpid(), "t": time.time()})
    finally:
        journal.close()


@ray.remote(**OPTIONS)
class Account:
    """tests/soak/app/bank/account.py on Ray: the same journal, the same idempotent steps.
    Ray gives an actor no start-up hook that may run tasks, so the timer that resends owed
    credits starts with the first message (the auditor sends one every second)."""

    def __init__(self, name, directory, initial):
        self.name = name
        born(directory, name)
        self.balance = initial
        self.decided, self.credited, self.owed = {}, set(), {}
        self.debited_total = self.credited_total = 0
        path = Path(directory) / f"{name}.jsonl"
        for record in read(path):
            self._replay(record)
        self.journal = Journal(path)
        self.peers = {}
        self.flusher = None

    def _replay(self, record):
        kind, tid = record["k"], record["id"]
        if kind == "debit":
            self.decided[tid] = "applied"
            self.balance -= record["amount"]
            self.debited_total += record["amount"]
            self.owed[tid] = record
        elif kind == "declined":
            self.decided[tid] = "declined"
        elif kind == "sent":
            self.owed.pop(tid, None)
        elif kind == "credit":
            self.credited.add(tid)
            self.balance += record["amount"]
            self.credited_total += record["amount"]

    def _record(self, record):
        self.journal.append(record)
        self._replay(record)

    def _start_flusher(self):
        if self.flusher is None:
            self.flusher = asyncio.get_running_loop().create_task(self._flush_forever())

    async def _flush_forever(self):
        while True:
            for record in list(self.owed.values()):
                if not await self._send_credit(record):
                    break
            await asyncio.sleep(FLUSH_EVERY)

    async def debit(self, msg):
        self._start_flusher()
        tid = msg["id"]
        if tid in self.decided:
            return self.decided[tid]
        if msg["amount"] > self.balance:
            self._record({"k": "declined", "id": tid})
            return "declined"
        record = {"k": "debit", "id": tid, "to": msg["to"], "amount": msg["amount"]}
        self._record(record)
        await self._send_credit(record)
        return "applied"

    async def credit(self, msg):
        self._start_flusher()
        if msg["id"] not in self.credited:
            self._record(
                {"k": "credit", "id": msg["id"], "from": msg["from"], "amount": msg["amount"]}
            )

    async def audit(self):
        self._start_flusher()
        return {
            "balance": self.balance,
            "debited": self.debited_total,
            "credited": self.credited_total,
            "owed": len(self.owed),
        }

    async def _send_credit(self, record):
        to = record["to"]
        credit = {"id": record["id"], "from": self.name, "amount": record["amount"]}
        try:
            if to not in self.peers:
                self.peers[to] = ray.get_actor(to, namespace=NAMESPACE)
            await asyncio.wait_for(self.peers[to].credit.remote(credit), CALL_TIMEOUT)
        except Exception:  # the destination is restarting, a timeout: the flusher retries
            return False
        if record["id"] in self.owed:
            self._record({"k": "sent", "id": record["id"]})
        return True


@ray.remote(**OPTIONS)
class Teller:
    """tests/soak/app/bank/teller.py on Ray, every transfer by call. ``run`` never returns:
    after a restart Ray sends it again (max_task_retries), which starts the new incarnation."""

    def __init__(self, name, directory, accounts, rate):
        self.name = name
        born(directory, name)
        self.incarnation = uuid.uuid4().hex[:8]
        self.accounts = accounts
        self.rate = rate
        self.log = Journal(Path(directory) / f"{name}.acks.jsonl")
        self.random = random.Random(f"{name}.{self.incarnation}")
        self.seq = 0
        self.in_flight = set()
        self.paused = False
        self.handles = {}

    async def run(self):
        while True:
            if not self.paused and len(self.in_flight) < 64:
                task = asyncio.get_running_loop().create_task(self._transfer())
                self.in_flight.add(task)
                task.add_done_callback(self.in_flight.discard)
            await asyncio.sleep(1.0 / self.rate)

    async def set_rate(self, rate):
        self.rate = rate

    async def pause(self):
        self.paused = True

    async def status(self):
        return {"in_flight": len(self.in_flight), "paused": self.paused}

    async def _transfer(self):
        self.seq += 1
        source, destination = self.random.sample(self.accounts, 2)
        transfer = {
            "id": f"{self.name}.{self.incarnation}.{self.seq}",
            "to": destination,
            "amount": self.random.randint(1, 10),
        }
        started = time.time()
        outcome = await self._attempt(source, transfer, started + DEADLINE)
        if outcome is not None:
            self.log.append({
                "id": transfer["id"], "from": source, "to": destination,
                "amount": transfer["amount"], "via": "call", "outcome": outcome,
                "t0": started, "t1": time.time(),
            })  # fmt: skip

    async def _attempt(self, source, transfer, deadline):
        for attempt in range(1_000):
            try:
                if source not in self.handles:
                    self.handles[source] = ray.get_actor(source, namespace=NAMESPACE)
                ref = self.handles[source].debit.remote(transfer)
                return str(await asyncio.wait_for(ref, CALL_TIMEOUT))
            except Exception:  # the same id again, which cannot move money twice
                pause = BACKOFF[min(attempt, len(BACKOFF) - 1)]
                if time.time() + pause > deadline:
                    return None
                await asyncio.sleep(pause)
        return None


@ray.remote(**OPTIONS)
class Auditor:
    def __init__(self, directory, accounts):
        born(directory, "auditor")
        self.accounts = accounts
        self.log = Journal(Path(directory) / "audits.jsonl")

    async def run(self):
        handles = [ray.get_actor(a, namespace=NAMESPACE) for a in self.accounts]
        while True:
            await asyncio.sleep(1.0)
            calls = [asyncio.wait_for(h.audit.remote(), CALL_TIMEOUT) for h in handles]
            answers = await asyncio.gather(*calls, return_exceptions=True)
            states = [a for a in answers if isinstance(a, dict)]
            if len(states) < len(self.accounts):
                self.log.append({"t": time.time(), "complete": False})
                continue
            held = sum(s["balance"] for s in states)
            in_flight = sum(s["debited"] for s in states) - sum(s["credited"] for s in states)
            self.log.append({
                "t": time.time(), "complete": True, "held": held, "in_flight": in_flight,
                "total": held + in_flight,
            })  # fmt: skip


def _get(refs, timeout=CALL_TIMEOUT):
    return ray.get(refs, timeout=timeout)


def drain(accounts, tellers):
    started = time.monotonic()
    while time.monotonic() < started + DRAIN_DEADLINE:
        try:
            _get([t.pause.remote() for t in tellers])
            statuses = _get([t.status.remote() for t in tellers])
            audits = _get([a.audit.remote() for a in accounts])
        except Exception:
            time.sleep(0.2)
            continue
        quiet = (
            all(s["paused"] and s["in_flight"] == 0 for s in statuses)
            and all(a["owed"] == 0 for a in audits)
            and sum(a["debited"] for a in audits) == sum(a["credited"] for a in audits)
        )
        if quiet:
            return {
                "drained_in": time.monotonic() - started,
                "live_total": sum(a["balance"] for a in audits),
            }
        time.sleep(0.2)
    return {"drained_in": None, "live_total": None}


def main():
    # The protocol keeps the real stdout; everything else printed (Ray's, its children's)
    # goes to stderr, the run's log.
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    config = json.loads(sys.argv[1])
    directory = config["dir"]
    names = [f"acct-{i}" for i in range(config["accounts"])]
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
        namespace=NAMESPACE,
    )  # fmt: skip
    accounts = [Account.options(name=n).remote(n, directory, config["initial"]) for n in names]
    _get([a.audit.remote() for a in accounts], 60)
    tellers = [
        Teller.options(name=f"teller-{i}").remote(f"teller-{i}", directory, names, config["rate"])
        for i in range(config["tellers"])
    ]
    auditor = Auditor.remote(directory, names)
    running = [t.run.remote() for t in tellers] + [auditor.run.remote()]  # held: never done
    _get([t.status.remote() for t in tellers], 60)
    print(json.dumps({"ready": True}), file=protocol, flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "rate":
            for teller in tellers:
                teller.set_rate.remote(command["rate"])
        elif command["op"] == "drain":
            print(json.dumps(drain(accounts, tellers)), file=protocol, flush=True)
        elif command["op"] == "stop":
            break
    del running
    ray.shutdown()


if __name__ == "__main__":
    main()
