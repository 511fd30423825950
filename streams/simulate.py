"""Synthetic traffic: a population of leads with different fits and behaviours.

Deterministic for a seed. Produces Segment messages for ``funnel.events`` (anonymous visitors who
later identify, buyers, researchers, tyre-kickers, referrals, a few malformed messages) and the
sales commands that follow (created leads, won and lost deals) for ``funnel.sales-feedback``.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from faker import Faker

GOOD_INDUSTRIES = ["software", "saas", "fintech", "ecommerce", "retail", "education"]
OTHER_INDUSTRIES = ["agriculture", "mining", "government", "non-profit", "hospitality"]
GOOD_TITLES = ["CTO", "Head of Marketing", "VP Sales", "Founder", "Director of IT", "CEO"]
OTHER_TITLES = ["Student", "Intern", "Analyst", "Engineer", "Assistant"]
PLAIN_TITLES = ["Analyst", "Engineer", "Consultant", "Specialist"]
DECIDERS = ["ceo", "cto", "cfo", "founder", "head", "director", "vp", "manager", "owner"]
GOOD_COUNTRIES = ["US", "GB", "DE", "FR", "VN", "SG", "AU", "CA"]
OTHER_COUNTRIES = ["BR", "AR", "EG", "KE", "PE"]
CAMPAIGNS = [
    {"source": "google", "medium": "cpc", "name": "q4-launch"},
    {"source": "facebook", "medium": "social", "name": "brand-awareness"},
    {"source": "newsletter", "medium": "email", "name": "monthly-digest"},
    {"source": "partner", "medium": "referral", "name": "partner-program"},
    {"source": "linkedin", "medium": "cpc", "name": "abm-enterprise"},
]
PAGES = ["/", "/blog/lead-scoring", "/blog/mql-vs-sql", "/features", "/customers", "/about"]


# The hidden ground truth of a deal: the log-odds of winning it, once a lead is in Sales' hands,
# from a few of its traits and behaviours before that moment. Nothing in the messages says it;
# ``funnel learn`` has to find it from the outcomes (tests/unit/test_learn.py checks it does).
TRUE_DRIVERS = {"webinar": 2.0, "ad-clicked": -1.3, "decision-maker": 0.7}
TRUE_BASE = -0.6


def true_propensity(webinar: bool, ad_clicked: bool, decision_maker: bool) -> float:
    """The probability that Sales wins the deal of a lead with these drivers."""
    logit = TRUE_BASE + TRUE_DRIVERS["webinar"] * webinar \
        + TRUE_DRIVERS["ad-clicked"] * ad_clicked + TRUE_DRIVERS["decision-maker"] * decision_maker
    return 1 / (1 + math.exp(-logit))


def _decides(traits: dict[str, Any]) -> bool:
    return any(w in str(traits.get("job_title", "")).lower() for w in DECIDERS)


@dataclass
class Traffic:
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)   # (key, message)
    malformed: list[tuple[str | None, bytes]] = field(default_factory=list)
    commands: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # lead id -> its true chance of a won deal (buyers and referrals only); never published
    propensity: dict[str, float] = field(default_factory=dict)


class _Gen:
    def __init__(self, seed: int, start: datetime, days: int) -> None:
        self.rnd = random.Random(seed)
        self.fake = Faker()
        self.fake.seed_instance(seed)
        self.start, self.days = start, days
        self.out = Traffic()

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rnd.getrandbits(128)))

    def at(self, day: float) -> datetime:
        return self.start + timedelta(days=min(day, self.days - 0.001), seconds=self.rnd.randint(0, 3600))

    def emit(self, msg: dict[str, Any]) -> None:
        msg.setdefault("messageId", self.uid())
        key = msg.get("userId") or msg["anonymousId"]
        self.out.events.append((key, msg))

    def msg(self, type_: str, who: dict[str, str], t: datetime, **kw: Any) -> dict[str, Any]:
        m: dict[str, Any] = {"type": type_, "timestamp": t.isoformat().replace("+00:00", "Z"), **who}
        m.update(kw)
        return m

    def traits(self, good: bool, **extra: Any) -> dict[str, Any]:
        f, r = self.fake, self.rnd
        company = f.company()
        domain = company.split()[0].lower().strip(",.") + ".com"
        t = {
            "name": f.name(),
            "email": f"{f.user_name()}@{domain if good or r.random() < 0.4 else 'gmail.com'}",
            "company": company,
            "industry": r.choice(GOOD_INDUSTRIES if good else OTHER_INDUSTRIES),
            "employees": r.randint(60, 5000) if good else r.randint(1, 40),
            "country": r.choice(GOOD_COUNTRIES if good else OTHER_COUNTRIES),
            "job_title": r.choice(GOOD_TITLES if good else OTHER_TITLES),
        }
        if good:
            t["budget"] = r.choice([15000, 25000, 50000, 120000])
        t.update(extra)
        return t

    def browse(self, who: dict[str, str], day: float, n: int, campaign: dict | None) -> None:
        for i in range(n):
            page = self.rnd.choice(PAGES)
            ctx: dict[str, Any] = {"page": {"url": f"https://example.com{page}", "path": page}}
            if campaign and i == 0:
                ctx["campaign"] = campaign
            self.emit(self.msg("page", who, self.at(day + i * 0.05),
                               properties={"path": page, "url": f"https://example.com{page}"},
                               context=ctx))

    def track(self, who: dict[str, str], day: float, name: str, **props: Any) -> None:
        self.emit(self.msg("track", who, self.at(day), event=name, properties=props))

    def command(self, lead_id: str, action: str, day: float, **kw: Any) -> None:
        c = {"command_id": self.uid(), "lead_id": lead_id, "action": action,
             "occurred_at": self.at(day).isoformat().replace("+00:00", "Z"),
             "actor": self.fake.email(), **kw}
        self.out.commands.append((lead_id, c))

    def person(self, days: int) -> None:
        """One person's journey: a buyer, a researcher, a visitor, a referral or a lead found
        by Sales."""
        r = self.rnd
        anon = self.uid()
        user = f"u-{self.uid()[:12]}"
        campaign = r.choice(CAMPAIGNS) if r.random() < 0.7 else None
        day = r.uniform(0, max(days - 3, 0.5))
        kind = r.choices(["buyer", "researcher", "visitor", "referral", "sales"],
                         weights=[22, 28, 38, 6, 6])[0]
        if kind == "sales":
            traits = self.traits(True, job_title=r.choice(GOOD_TITLES + PLAIN_TITLES))
            self.command(user, "create", day, reason="met at trade show", traits=traits)
            p = true_propensity(False, False, _decides(traits))
            self.out.propensity[user] = p
            if r.random() < 0.2:
                return                                                      # still open
            if r.random() < p:
                self.command(user, "won", day + 2, amount=float(r.choice([1200, 4800, 9600])),
                             currency="USD", reason="signed")
            else:
                self.command(user, "lost", day + 2, reason="no decision")
            return
        self.browse({"anonymousId": anon}, day, r.randint(1, 4), campaign)    # anonymous first
        if kind == "visitor" and r.random() < 0.6:
            return                                                          # never identifies
        good = kind in ("buyer", "referral") or (kind == "researcher" and r.random() < 0.5)
        extra = {"referred_by": self.fake.email()} if kind == "referral" else {}
        known = {"userId": user, "anonymousId": anon}
        if kind in ("buyer", "referral") and r.random() < 0.4:
            extra["job_title"] = r.choice(PLAIN_TITLES)   # not every buyer decides
        traits = self.traits(good, **extra)
        self.emit(self.msg("identify", known, self.at(day + 0.3), traits=traits))
        self.browse(known, day + 0.4, r.randint(1, 3), None)
        if kind == "visitor":
            if r.random() < 0.3:
                self.track(known, day + 0.5, "Unsubscribed")
            return
        self.track(known, day + 0.5, "Content Downloaded", asset="lead-scoring-guide.pdf")
        if r.random() < 0.5:
            self.track(known, day + 0.6, "Newsletter Subscribed")
        if kind == "researcher":
            if r.random() < 0.4:
                self.track(known, day + 1, "Webinar Attended", webinar="funnel-101")
            return
        self.buyer(known, user, day, campaign, traits)

    def buyer(self, known: dict[str, str], user: str, day: float, campaign: dict | None,
              traits: dict[str, Any]) -> None:
        """Pricing, maybe a webinar or an ad click, a demo and a call; then a deal won or lost
        as its hidden propensity says (or still open)."""
        r = self.rnd
        webinar = r.random() < 0.4
        ad_clicked = campaign is not None and campaign["medium"] == "cpc" and r.random() < 0.6
        if ad_clicked:
            self.track(known, day + 0.7, "Ad Clicked", campaign=campaign["name"])
        if webinar:
            self.track(known, day + 0.8, "Webinar Attended", webinar="funnel-101")
        self.browse(known, day + 1, 1, None)
        self.emit(self.msg("page", known, self.at(day + 1.1), properties={"path": "/pricing"}))
        self.track(known, day + 1.2, "Demo Requested")
        self.track(known, day + 1.5, "Call Completed", duration_seconds=r.randint(300, 1800))
        p = true_propensity(webinar, ad_clicked, _decides(traits))
        self.out.propensity[user] = p
        if r.random() < 0.1:
            return                                                          # still open
        if r.random() < p:
            if r.random() < 0.55:
                self.track(known, day + 2, "Order Completed",
                           revenue=float(r.choice([900, 2400, 7200])), currency="USD")
            else:
                self.command(user, "won", day + 2.5, amount=float(r.choice([1500, 6000])),
                             currency="USD")
        elif r.random() < 0.6:
            self.command(user, "lost", day + 2.5, reason="went with a competitor")
        else:
            self.command(user, "reject", day + 2.5, reason="no budget this year")

    def ad_spend(self, start: datetime, days: int) -> None:
        """What the ad platforms report they spent on each campaign, a week at a time."""
        r = self.rnd
        week = start - timedelta(days=start.weekday())
        while week < start + timedelta(days=days):
            year, number, _ = week.isocalendar()
            for c in CAMPAIGNS:
                self.emit({
                    "type": "track", "event": "Ad Spend Reported",
                    "anonymousId": f"ads-{c['source']}",
                    "timestamp": (week + timedelta(days=7)).isoformat(),
                    "properties": {"campaign": c["name"], "period": f"{year}-W{number:02d}",
                                   "amount": r.randint(2, 16) * 50,
                                   "currency": "EUR" if c["source"] == "facebook" else "USD"}})
            week += timedelta(days=7)


def generate(leads: int, days: int, seed: int = 7, start: datetime | None = None) -> Traffic:
    """The traffic of ``leads`` people over ``days`` days, in event-time order per lead."""
    start = start or datetime(2026, 10, 1, tzinfo=timezone.utc)
    g = _Gen(seed, start, max(days, 1))
    for _ in range(leads):
        g.person(days)
    g.ad_spend(start, days)
    # a few malformed messages, as any real topic has
    for i in range(max(1, leads // 100)):
        g.out.malformed.append((None, b"this is not json {"))
        g.out.malformed.append((f"bad-{i}", b'{"type": "page", "timestamp": "2026-10-01T00:00:00Z"}'))
    return g.out
