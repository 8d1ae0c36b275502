"""Thousands of concurrent SMTP connections on one daemon: all are served,
each message is acknowledged only once durable, none is lost."""
import asyncio
import resource
import unittest

import harness

CONNECTIONS = 2000


async def one_client(port, i, results):
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)

    async def reply():
        while True:
            line = await asyncio.wait_for(reader.readline(), 60)
            if not line:
                raise ConnectionError("closed")
            if line[3:4] != b"-":
                return int(line[:3])

    assert await reply() == 220
    writer.write(b"EHLO many.test\r\n")
    assert await reply() == 250
    # Hold every connection open until all are established, then send.
    results["open"] += 1
    await results["go"].wait()
    writer.write(f"MAIL FROM:<s{i}@example.com>\r\nRCPT TO:<r{i}@example.net>\r\nDATA\r\n".encode())
    assert [await reply() for _ in range(3)] == [250, 250, 354]
    writer.write(harness.make_message(f"k{i}", size=2000) + b"\r\n.\r\n")
    assert await reply() == 250
    results["acked"] += 1
    writer.write(b"QUIT\r\n")
    await reply()
    writer.close()


async def run(port):
    results = {"open": 0, "acked": 0, "go": asyncio.Event()}
    tasks = [asyncio.create_task(one_client(port, i, results)) for i in range(CONNECTIONS)]
    for _ in range(600):
        if results["open"] == CONNECTIONS or any(t.done() for t in tasks):
            break
        await asyncio.sleep(0.1)
    opened = results["open"]
    results["go"].set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [repr(o) for o in outcomes if isinstance(o, BaseException)]
    return opened, results["acked"], errors


class ThousandsTest(unittest.TestCase):
    def test_two_thousand_concurrent_connections(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
        d = harness.Daemon()
        try:
            d.start()
            opened, acked, errors = asyncio.run(run(d.smtp_port))
            self.assertEqual(errors[:5], [])
            self.assertEqual(opened, CONNECTIONS, "not every connection was open at the same time")
            self.assertEqual(acked, CONNECTIONS)
            self.assertEqual(d.stats()["intake"]["accepted"], CONNECTIONS)
            self.assertEqual(d.stop(), 0)
            self.assertEqual(len(d.spool_list()), CONNECTIONS)
        finally:
            d.cleanup()


if __name__ == "__main__":
    harness.main()
