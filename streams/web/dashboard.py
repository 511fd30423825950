"""The live dashboard and ``/healthz`` of the HTTP server (next to the collector).

``/`` is the funnel with the conversion between stages, the KPIs of a period (all time, or a
month), hot high-fit leads first, recent SQL handoffs and SLA breaches; ``/leads/{id}`` a lead
with its scores, explanation and history. The pages are static HTML that fetch ``/api/...``
every few seconds; every number comes from the KPI views and the projection.
"""

from __future__ import annotations

from datetime import date
from importlib.resources import files
from typing import Any

import orjson
from aiohttp import web
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from streams.db.migrate import connect_kwargs
from schemas.lead import STAGES
from streams.settings import Settings

POOL = web.AppKey("pool", AsyncConnectionPool)
SETTINGS = web.AppKey("settings", Settings)
REFRESH_SECONDS = 3


def _json(body: Any, status: int = 200) -> web.Response:
    # orjson writes dates and times itself (ISO 8601); numeric columns come as Decimal
    return web.Response(body=orjson.dumps(body, default=float), status=status,
                        content_type="application/json")


async def _rows(request: web.Request, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with request.app[POOL].connection() as conn:
        conn.row_factory = dict_row  # type: ignore[assignment]
        cur = await conn.execute(sql, args)  # type: ignore[arg-type]
        return await cur.fetchall()  # type: ignore[return-value]


def _period(request: web.Request) -> tuple[str, date]:
    """``?period=all`` (default) or ``?period=YYYY-MM`` (a month)."""
    text = request.query.get("period", "all")
    if text == "all":
        return "all", date(1970, 1, 1)
    try:
        year, month = (int(x) for x in text.split("-"))
        return "month", date(year, month, 1)
    except ValueError:
        raise web.HTTPBadRequest(text=f"period {text!r} is not 'all' or YYYY-MM") from None


async def overview(request: web.Request) -> web.Response:
    grain, period = _period(request)
    where = "grain = %s AND period = %s AND dimension = 'all'"
    funnel = await _rows(request, f"SELECT * FROM kpi_funnel WHERE {where}", grain, period)
    sales = await _rows(request, f"SELECT * FROM kpi_sales WHERE {where}", grain, period)
    revenue = await _rows(request, f"SELECT currency, customers, revenue FROM kpi_revenue "
                          f"WHERE {where} ORDER BY currency", grain, period)
    spend = await _rows(request, "SELECT currency, sum(spend) AS spend FROM kpi_costs WHERE "
                        "grain = %s AND period = %s GROUP BY currency ORDER BY currency",
                        grain, period)
    stages = await _rows(request, "SELECT stage, leads FROM kpi_stages WHERE dimension = 'all'")
    months = await _rows(request, "SELECT DISTINCT period FROM kpi_funnel WHERE grain = 'month' "
                         "ORDER BY period DESC")
    hot = await _rows(request, """
        SELECT lead_id, stage, interest_score, temperature, fit_score, quality, origin, email,
               company, last_activity_at
          FROM leads
         WHERE merged_into IS NULL AND stage NOT IN ('customer', 'disqualified')
           AND (email IS NOT NULL OR stage <> 'iql')
         ORDER BY (temperature = 'hot') DESC, (quality = 'high') DESC,
                  (temperature = 'warm') DESC, (quality = 'medium') DESC,
                  interest_score DESC, lead_id
         LIMIT 15""")
    handoffs = await _rows(request, """
        SELECT t.lead_id, t.occurred_at, t.trigger, t.actor, l.email, l.company,
               l.interest_score, l.quality, l.stage AS stage_now
          FROM lead_transitions t JOIN leads l USING (lead_id)
         WHERE t.to_stage = 'sql' ORDER BY t.occurred_at DESC, t.lead_id LIMIT 10""")
    breaches = await _rows(request, """
        SELECT lead_id, sql_at, sla_breached_at, email, company, interest_score, quality
          FROM leads WHERE sla_breached_at IS NOT NULL AND stage = 'sql'
           AND merged_into IS NULL
         ORDER BY sla_breached_at DESC, lead_id LIMIT 10""")
    return _json({
        "grain": grain, "period": period,
        "funnel": funnel[0] if funnel else None,
        "sales": sales[0] if sales else None,
        "revenue": revenue, "spend": spend,
        "stages": {r["stage"]: r["leads"] for r in stages},
        "stage_order": list(STAGES),
        "months": [r["period"].strftime("%Y-%m") for r in months],
        "hot": hot, "handoffs": handoffs, "breaches": breaches,
        "refresh_seconds": REFRESH_SECONDS,
    })


async def lead_api(request: web.Request) -> web.Response:
    lead_id = request.match_info["lead_id"]
    rows = await _rows(request, """
        SELECT lead_id, stage, interest_score, temperature, fit_score, quality, origin, email,
               company, first_touch_source, first_touch_medium, first_touch_campaign,
               first_seen_at, last_activity_at, stage_entered_at, interest_at, orders, revenue,
               revenue_by_currency, sla_breached_at, merged_into, merged_from, traits,
               contributions, fit_reasons, model_name, model_version, events_count, version
          FROM leads WHERE lead_id = %s""", lead_id)
    if not rows:
        return _json({"code": "not_found", "message": f"no lead {lead_id!r}"}, status=404)
    history = await _rows(request, "SELECT version, from_stage, to_stage, trigger, occurred_at, "
                          "actor, reason FROM lead_transitions WHERE lead_id = %s "
                          "ORDER BY version", lead_id)
    return _json({"lead": rows[0], "history": history})


def page(name: str) -> str:
    return files("streams.web").joinpath("assets", name).read_text("utf-8")


async def index(request: web.Request) -> web.Response:
    return web.Response(text=page("dashboard.html"), content_type="text/html")


async def lead_page(request: web.Request) -> web.Response:
    return web.Response(text=page("lead.html"), content_type="text/html")


async def stylesheet(request: web.Request) -> web.Response:
    return web.Response(text=page("funnel.css"), content_type="text/css")


async def database_ok(app: web.Application) -> None:
    """Raise if the database does not answer (for ``/healthz``)."""
    async with app[POOL].connection(timeout=5) as conn:
        await conn.execute("SELECT 1")


def install(app: web.Application, settings: Settings) -> None:
    """Add the dashboard to the HTTP app (needs FUNNEL_DATABASE_URL)."""
    app[SETTINGS] = settings

    async def pool(app: web.Application):
        p = AsyncConnectionPool(settings.dsn(), min_size=1, max_size=4, open=False,
                                kwargs={**connect_kwargs(settings.db_schema),
                                        "autocommit": True})
        await p.open(wait=False)
        app[POOL] = p
        yield
        await p.close()

    app.cleanup_ctx.append(pool)
    app.router.add_get("/", index)
    app.router.add_get("/leads/{lead_id}", lead_page)
    app.router.add_get("/static/funnel.css", stylesheet)
    app.router.add_get("/api/overview", overview)
    app.router.add_get("/api/leads/{lead_id}", lead_api)

