"""Contacts at scale: 100,000 contacts with 250,000 identities.

1. Data: contacts with made-up names (some with accents), each with an email address; most with a phone
   number (as ``phone``, many also as ``whatsapp``), some with a Telegram id; about 2% are planted duplicates
   (the same address in another Gmail form, a similar name at the same company domain, a pre-chat email that
   is another contact's address). Written with bulk inserts.
2. Contact search (p50/p99): ``search_contacts`` as ``GET /api/contacts?q=`` runs it (each call first reads what
   changed since the last), for misspelt names, phone numbers in other formats, addresses and handles. The
   index's first build is timed apart.
3. Dedupe scan: what ``switchboard contacts dedupe`` does: read every contact into a fresh index, then compare
   within blocks (rapidfuzz ``process.cdist``); both times, and the pairs found.
4. Merge: ``merge_contacts`` of contacts with 3 tickets of 5 messages each (p50 and max of N merges).

    .venv/bin/python -m bench.contacts [--contacts 100000] [--db sqlite,postgres] [--queries 500] [--merges 20]

Goals on a 2-core machine: search p99 under 50 ms, the dedupe scan under 60 s, a merge under 200 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import PG_DEFAULT, fresh_database, percentile  # noqa: E402
from hub.config import Settings  # noqa: E402
from hub.db import insert_rows, utcnow  # noqa: E402
from hub.principals import Principal  # noqa: E402
from hub.runtime import Runtime, standalone  # noqa: E402
from ticketing import tables  # noqa: E402
from ticketing.contact_index import ContactIndex, built_index, search_contacts  # noqa: E402
from ticketing.contacts import merge_contacts  # noqa: E402

FIRST = (
    "Maria Jose Ana Luis Carlos Sofia Lucia Pedro Juan Elena Marta Pablo Laura Diego Sara Javier Paula Miguel Ines "
    "Hugo Li Wei Chen Yan Ming Hui Jonas Lena Anna Paul Felix Emma Noah Mia Ben Leon Olivia Liam Ava Ethan Zoe "
    "Amir Leila Omar Yusuf Fatima Priya Ravi Arjun Neha Kenji Yuki Hana Sota Aiko Jose Renee Francois Zoe Bjorn "
    "Søren Åsa Ólafur Zoë José Renée François Chloé Ilse Greta Nils Tove Ivan Olga Dmitri Anya Pavel Irina"
).split()
LAST = (
    "Garcia Martinez Lopez Gonzalez Rodriguez Fernandez Sanchez Perez Gomez Diaz Wang Zhang Liu Chen Yang Huang "
    "Muller Schmidt Schneider Fischer Weber Meyer Wagner Becker Smith Johnson Williams Brown Jones Miller Davis "
    "Wilson Anderson Taylor Thomas Moore Khan Ahmed Ali Hassan Patel Sharma Singh Kumar Sato Suzuki Takahashi "
    "Tanaka Watanabe Ito Nakamura Kobayashi Rossi Russo Ferrari Esposito Bianchi Romano Colombo Dubois Durand "
    "Leroy Moreau Laurent Lefebvre Michel Nielsen Jensen Hansen Pedersen Andersen Larsen Ivanov Petrov Sidorov "
    "Novak Kowalski Nowak Wisniewski Horvat Kovac Garcia-Lopez O'Brien McCarthy Murphy Kelly Byrne Walsh"
).split()
SYLLABLES = "ka ro vin del mar tan ber lo shi gu na ten fel ho ria mon sa ki dor pe lan tu vo chen wa li ber so".split()
COMPANIES = [f"firm{i}.example" for i in range(400)]
FREE = ["gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "web.de"]
SUPERVISOR = Principal(agent_id=1, username="bench", display_name="", role="supervisor", queue_ids=frozenset())


def person(rng: random.Random, i: int) -> tuple[str, str, str]:
    first = rng.choice(FIRST)
    # Real customer lists have many more surnames than a list of common ones: most are made of syllables.
    last = rng.choice(LAST) if rng.random() < 0.3 else "".join(rng.choices(SYLLABLES, k=3)).capitalize()
    if rng.random() < 0.3:
        domain = rng.choice(COMPANIES)
    else:
        domain = rng.choice(FREE)
    local = f"{first}.{last}.{i}".lower().replace("'", "").replace(" ", "")
    return f"{first} {last}", f"{local}@{domain}", f"+1{rng.randint(200, 989)}{i % 10_000_000:07d}"


async def populate(rt: Runtime, n: int, rng: random.Random) -> dict[str, list[str]]:
    """Contacts and identities (about 2.5 per contact) in bulk; what to search for."""
    now = utcnow()
    contacts, identities = [], []
    samples: dict[str, list[str]] = {"names": [], "phones": [], "emails": [], "handles": []}
    for i in range(1, n + 1):
        name, email, phone = person(rng, i)
        attributes: dict[str, object] = {}
        if i % 50 == 0 and i > 1:  # planted: a pre-chat email that is the previous contact's address
            attributes = {"email": identities[-1]["value"] if identities[-1]["kind"] == "email" else email}
        if i % 97 == 0:  # planted: the same person again at a company domain, the name misspelt
            name = name.replace("a", "e", 1)
        contacts.append({"id": i, "name": name, "attributes": attributes, "created_at": now, "updated_at": now})
        identities.append({"contact_id": i, "kind": "email", "value": email, "created_at": now})
        if i % 10 < 7:
            identities.append({"contact_id": i, "kind": "phone", "value": phone, "created_at": now})
            if i % 10 < 5:
                identities.append({"contact_id": i, "kind": "whatsapp", "value": phone, "created_at": now})
        if i % 10 < 3:
            identities.append({"contact_id": i, "kind": "telegram", "value": str(700_000 + i), "created_at": now})
        if rng.random() < 0.02:
            samples["names"].append(name)
            samples["emails"].append(email)
            if i % 10 < 7:
                samples["phones"].append(phone)
            if i % 10 < 3:
                samples["handles"].append(str(700_000 + i))
    async with rt.db.begin() as conn:
        for start in range(0, len(contacts), 5000):
            await insert_rows(conn, tables.contacts, contacts[start : start + 5000])
        for start in range(0, len(identities), 5000):
            await insert_rows(conn, tables.contact_identities, identities[start : start + 5000])
        if conn.dialect.name == "postgresql":
            from sqlalchemy import text

            await conn.execute(text("SELECT setval(pg_get_serial_sequence('contacts', 'id'), :n)"), {"n": n})
    if rt.db.engine.dialect.name == "postgresql":  # the statistics autovacuum would gather after a bulk load
        from sqlalchemy import text

        async with rt.db.begin() as conn:
            await conn.execute(text("ANALYZE contacts, contact_identities"))
    print(f"  {len(contacts):,} contacts, {len(identities):,} identities")
    return samples


def typo(rng: random.Random, text: str) -> str:
    if len(text) < 4:
        return text
    i = rng.randrange(1, len(text) - 1)
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


def phone_format(rng: random.Random, e164: str) -> str:
    d = e164[2:]
    return rng.choice([f"({d[:3]}) {d[3:6]}-{d[6:]}", f"{d[:3]}.{d[3:6]}.{d[6:]}", f"+1 {d[:3]} {d[3:6]} {d[6:]}", d])


async def with_tickets(rt: Runtime, pairs: int) -> list[tuple[int, int]]:
    """``pairs`` pairs of contacts, the second of each with 3 tickets of 5 messages."""
    now = utcnow()
    async with rt.db.begin() as conn:
        from sqlalchemy import select

        ids = [
            r[0]
            for r in await conn.execute(select(tables.contacts.c.id).order_by(tables.contacts.c.id).limit(2 * pairs))
        ]
        out = list(zip(ids[0::2], ids[1::2], strict=True))
        for _, merged in out:
            for channel in ("email", "sms", "whatsapp"):
                tid = (
                    await conn.execute(
                        tables.tickets.insert()
                        .values(channel=channel, contact_id=merged, subject="bench", status="open", priority="normal",
                                created_at=now, updated_at=now, tags=[])
                        .returning(tables.tickets.c.id)
                    )
                ).scalar_one()  # fmt: skip
                await insert_rows(
                    conn,
                    tables.messages,
                    [
                        {"ticket_id": tid, "direction": "inbound", "channel": channel, "contact_id": merged,
                         "text": f"message {k}", "attachments": [], "meta": {}, "created_at": now,
                         "delivery_status": "received"}
                        for k in range(5)
                    ],
                )  # fmt: skip
    return out


async def run(kind: str, url: str, n: int, queries: int, merges: int) -> None:
    rng = random.Random(7)
    settings = Settings(database_url=url, _env_file=None)  # type: ignore[call-arg]
    async with standalone(settings) as rt:
        from ticketing.agents import create_agent
        from ticketing.models import AgentCreate, Role

        await create_agent(rt, data=AgentCreate(username="bench", password="bench-password", role=Role.SUPERVISOR))
        print(f"[{kind}] populating...")
        t = time.perf_counter()
        samples = await populate(rt, n, rng)
        print(f"  written in {time.perf_counter() - t:.1f} s")

        t = time.perf_counter()
        await built_index(rt)
        print(
            f"  search index first build (in the background; searches meanwhile use the database): "
            f"{time.perf_counter() - t:.2f} s"
        )
        kinds = {
            "misspelt name": lambda: typo(rng, rng.choice(samples["names"])),
            "phone, other format": lambda: phone_format(rng, rng.choice(samples["phones"])),
            "email": lambda: rng.choice(samples["emails"]),
            "handle": lambda: "@" + rng.choice(samples["handles"]),
        }
        all_times: list[float] = []
        found_first = 0
        for label, make in kinds.items():
            times = []
            for _ in range(queries // len(kinds)):
                q = make()
                t = time.perf_counter()
                hits = await search_contacts(rt, query=q, principal=SUPERVISOR)
                times.append((time.perf_counter() - t) * 1000)
                found_first += bool(hits)
            all_times += times
            print(f"  search {label:<20} p50 {percentile(times, 50):6.1f} ms  p99 {percentile(times, 99):6.1f} ms")
        print(
            f"  contact search (all {len(all_times)})  p50 {percentile(all_times, 50):6.1f} ms  "
            f"p99 {percentile(all_times, 99):6.1f} ms  (goal p99 < 50 ms); {found_first} with results"
        )

        index = ContactIndex(settings.default_phone_region, scan_only=True)
        t = time.perf_counter()
        async with rt.read() as conn:
            await index.refresh(conn)
        read = time.perf_counter() - t
        t = time.perf_counter()
        pairs = index.scan()
        scan = time.perf_counter() - t
        print(
            f"  dedupe: read {len(index.entries):,} contacts {read:.1f} s, compared {index.block_count:,} blocks "
            f"{scan:.1f} s, total {read + scan:.1f} s (goal < 60 s); {len(pairs):,} pairs suggested"
        )

        targets = await with_tickets(rt, merges)
        times = []
        for survivor, merged in targets:
            t = time.perf_counter()
            await merge_contacts(rt, survivor_id=survivor, merged_id=merged, principal=SUPERVISOR)
            times.append((time.perf_counter() - t) * 1000)
        print(
            f"  merge (3 tickets, 15 messages): p50 {percentile(times, 50):.1f} ms  max {max(times):.1f} ms "
            f"(goal < 200 ms)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--merges", type=int, default=20)
    parser.add_argument("--pg", default=PG_DEFAULT)
    args = parser.parse_args()
    for kind in args.db.split(","):
        with fresh_database(kind, args.pg) as url:
            asyncio.run(run(kind, url, args.contacts, args.queries, args.merges))


if __name__ == "__main__":
    main()
