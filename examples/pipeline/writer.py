import sqlite3

import rebeam


class Writer(rebeam.Actor):
    async def init(self, args):  # the supervisor's start waits for this;
        self.db = sqlite3.connect(args["db"])  # raising here is a failed start
        self.db.execute("CREATE TABLE IF NOT EXISTS rows (line TEXT)")

    async def handle_call(self, msg, from_):  # the return value is the reply
        with self.db:  # one transaction per batch
            self.db.executemany("INSERT INTO rows VALUES (?)", [(r,) for r in msg["rows"]])
        return {"ok": len(msg["rows"])}

    async def handle_info(self, msg):  # plain sends, Down and Exit notices, timers
        if isinstance(msg, rebeam.Down):  # a monitored process ended; msg.reason says why
            print(f"{msg.pid} ended: {msg.reason}")

    async def terminate(self, reason):
        self.db.close()
