"""HTTP injection: POST /api/v1/messages, raw and structured, and its problems."""
import json
import unittest

import harness


class HttpApiTest(unittest.TestCase):
    def setUp(self):
        self.d = harness.Daemon()
        self.d.start()

    def tearDown(self):
        self.d.cleanup()

    def post(self, body):
        return self.d.http("POST", "/api/v1/messages", json.dumps(body) if not isinstance(body, str) else body)

    def test_structured_message_is_accepted_once_durable(self):
        status, body, ctype = self.post({"from": "Shop <shop@example.com>", "to": ["a@example.net"],
                                         "cc": ["b@example.org"], "bcc": ["c@example.com"],
                                         "subject": "Grüße", "text": "hello", "html": "<p>hello</p>",
                                         "headers": {"X-Campaign": "c1"}})
        self.assertEqual(status, 202, body)
        self.assertEqual(ctype, "application/json")
        reply = json.loads(body)
        self.assertEqual(reply["recipients"], 3)
        self.d.stop()
        records = self.d.spool_list()
        self.assertEqual(sorted(r["recipient"] for r in records), ["a@example.net", "b@example.org", "c@example.com"])
        self.assertEqual({r["id"] for r in records}, {reply["id"]})
        self.assertEqual({r["sender"] for r in records}, {"shop@example.com"})

    def test_raw_message(self):
        status, body, _ = self.post({"from": "s@example.com", "to": ["r@example.net"],
                                     "raw": "Subject: raw\r\nMessage-ID: <raw1@x>\r\n\r\nbody\r\n"})
        self.assertEqual(status, 202, body)
        self.d.stop()
        self.assertEqual(self.d.spool_list()[0]["message_id"], "<raw1@x>")

    def test_bad_input_names_the_field(self):
        status, body, ctype = self.post({"from": "s@example.com", "to": ["ok@example.net", "not an address"],
                                         "text": "x"})
        self.assertEqual(status, 400)
        self.assertEqual(ctype, "application/problem+json")
        problem = json.loads(body)
        self.assertEqual(problem["status"], 400)
        self.assertEqual(problem["field"], "/to/1")
        status, body, _ = self.post("{not json")
        self.assertEqual(status, 400)
        status, body, _ = self.post({"to": ["a@example.net"], "text": "x"})
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(body)["field"], "/from")
        status, body, _ = self.post({"from": "s@example.com", "to": ["a@example.net"], "text": "x",
                                     "headers": {"X-Evil": "a\r\nBcc: victim@example.com"}})
        self.assertEqual(status, 400)
        self.assertIn("/headers", json.loads(body)["field"])
        self.assertEqual(self.d.stats()["intake"]["accepted"], 0)

    def test_unknown_path_and_method(self):
        self.assertEqual(self.d.http("GET", "/nope")[0], 404)
        self.assertEqual(self.d.http("GET", "/api/v1/messages")[0], 405)
        self.assertEqual(self.d.http("GET", "/healthz")[0], 200)


if __name__ == "__main__":
    harness.main()
