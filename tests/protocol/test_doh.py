"""DoH requests judged without any HTTP framing: routes, methods, media types, sizes, TTLs."""

from __future__ import annotations

import base64

import dns.message
import dns.rrset
import pytest

from resolver.protocol import doh

QUERY = dns.message.make_query("example.org", "A")
QUERY.id = 0
WIRE = QUERY.to_wire()
PADDED = base64.urlsafe_b64encode(WIRE).decode()
B64 = PADDED.rstrip("=")
POST = [(b"content-type", b"application/dns-message")]


@pytest.mark.parametrize(
    ("method", "target", "headers", "device", "message", "body"),
    [
        ("GET", f"/dns-query?dns={B64}", [], None, WIRE, False),
        ("GET", f"/dns-query?ct=x&dns={B64}", [], None, WIRE, False),
        ("GET", f"/dns-query?dns={PADDED}", [], None, WIRE, False),  # padding tolerated
        ("GET", f"/dns-query/Phone-17?dns={B64}", [], "phone-17", WIRE, False),
        ("POST", "/dns-query", POST, None, None, True),
        ("POST", "/dns-query/tab-2", POST, "tab-2", None, True),
        ("POST", "/dns-query", [(b"Content-Type", b"application/dns-message; x=1")], None,
         None, True),
        ("POST", "/dns-query", [*POST, (b"content-length", b"65535")], None, None, True),
    ],
)  # fmt: skip
def test_accepted_heads(method: str, target: str, headers: list[tuple[bytes, bytes]],
                        device: str | None, message: bytes | None, body: bool) -> None:  # fmt: skip
    assert doh.read_head(method, target, headers) == doh.Request(device, message, body)


@pytest.mark.parametrize(
    ("method", "target", "headers", "status"),
    [
        ("PUT", "/dns-query", POST, 405),
        ("DELETE", f"/dns-query?dns={B64}", [], 405),
        ("HEAD", f"/dns-query?dns={B64}", [], 405),
        ("POST", "/dns-query", [], 415),
        ("POST", "/dns-query", [(b"content-type", b"application/json")], 415),
        ("POST", "/dns-query", [(b"content-type", b"application/dns-udpwireformat")], 415),
        ("POST", "/dns-query", [*POST, (b"content-length", b"65536")], 413),
        ("POST", "/dns-query", [*POST, (b"content-length", b"-1")], 400),
        ("GET", "/dns-query", [], 400),
        ("GET", "/dns-query?dns=", [], 400),
        ("GET", "/dns-query?dns=%%%", [], 400),
        ("GET", "/dns-query?dns=" + "A" * 87500, [], 413),
        ("GET", "/dns-query?dns=AAAA+AAA", [], 400),
        ("GET", "/", [], 404),
        ("GET", "/dns-query-x", [], 404),
        ("GET", "/resolve?name=x", [], 404),
        ("GET", f"/dns-query/bad_id?dns={B64}", [], 400),
        ("GET", f"/dns-query/a/b?dns={B64}", [], 400),
        ("GET", f"/dns-query/{'x' * 64}?dns={B64}", [], 400),
        ("GET", "/dns-query?dns=" + "A" * 200000, [], 414),
    ],
)
def test_refused_heads(method: str, target: str, headers: list[tuple[bytes, bytes]],
                       status: int) -> None:  # fmt: skip
    with pytest.raises(doh.HttpError) as refused:
        doh.read_head(method, target, headers)
    assert refused.value.status == status
    assert status in doh.STATUS_TEXT


@pytest.mark.parametrize(
    ("message", "status"),
    [(b"", 400), (b"\x00" * 11, 400), (dns.message.make_response(QUERY).to_wire(), 400),
     (b"\x00" * 65536, 413)],
)  # fmt: skip
def test_messages_that_cannot_be_queries(message: bytes, status: int) -> None:
    with pytest.raises(doh.HttpError) as refused:
        doh.check_message(message)
    assert refused.value.status == status


def test_a_query_passes() -> None:
    assert doh.check_message(WIRE) == WIRE


def reply_with(*sections: tuple[str, list[str]]) -> bytes:
    response = dns.message.make_response(QUERY)
    for section, records in sections:
        target = response.answer if section == "answer" else response.authority
        for text in records:
            name, ttl, rdclass, rdtype, rdata = text.split(" ", 4)
            target.append(dns.rrset.from_text(name, int(ttl), rdclass, rdtype, rdata))
    return response.to_wire()


@pytest.mark.parametrize(
    ("sections", "age"),
    [
        ([("answer", ["example.org. 300 IN A 192.0.2.1"])], 300),
        ([("answer", ["example.org. 300 IN CNAME b.example.org.",
                      "b.example.org. 60 IN A 192.0.2.1"])], 60),
        ([("authority", ["example.org. 3600 IN SOA ns. host. 1 2 3 4 120"])], 120),
        ([("authority", ["example.org. 30 IN SOA ns. host. 1 2 3 4 120"])], 30),
        ([], 0),
    ],
)  # fmt: skip
def test_max_age_is_the_smallest_ttl(sections: list[tuple[str, list[str]]], age: int) -> None:
    assert doh.max_age(reply_with(*sections)) == age
    headers = doh.answer_headers(reply_with(*sections))
    assert (b"cache-control", f"max-age={age}".encode()) in headers


def test_max_age_ignores_the_opt_record_and_survives_garbage() -> None:
    response = dns.message.make_response(dns.message.make_query("example.org", "A", use_edns=0))
    response.answer.append(dns.rrset.from_text("example.org.", 77, "IN", "A", "192.0.2.1"))
    assert doh.max_age(response.to_wire()) == 77
    assert doh.max_age(b"\x00\x01\x81\x80\x00\x01\x00\x05") == 0
    plain = dns.message.make_response(QUERY)
    plain.answer.append(dns.rrset.from_text("example.org.", 77, "IN", "A", "192.0.2.1"))
    assert doh.max_age(plain.to_wire()[:-5]) == 0


def test_error_responses_say_why_and_are_not_cached() -> None:
    headers, body = doh.error_headers(doh.HttpError(405, "only GET and POST"))
    assert (b"allow", b"GET, POST") in headers
    assert (b"cache-control", b"no-store") in headers
    assert body == b"only GET and POST\n"
    assert (b"content-length", str(len(body)).encode()) in headers


@pytest.mark.parametrize(("extra", "refused"), [(0, False), (1, True)])
def test_head_size_limit(extra: int, refused: bool) -> None:
    headers = [(b"host", b"dns.test"), (b"x", b"a" * 100)]
    limit = len("/dns-query") + (4 + 8 + 32) + (1 + 100 + 32)
    target = "/dns-query" + "x" * extra
    if refused:
        with pytest.raises(doh.HttpError) as error:
            doh.check_head_size(target, headers, limit)
        assert error.value.status == 431
    else:
        doh.check_head_size(target, headers, limit)
