"""Settings, read from the environment (prefix ``FUNNEL_``). The only place env is read."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FUNNEL_", extra="ignore")

    broker: str | None = Field(None, description="Kafka bootstrap URL(s); unset: embedded broker")
    database_url: SecretStr | None = Field(None, description="PostgreSQL URL; unset: embedded")
    topic_prefix: str = "funnel."
    partitions: int = Field(8, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1)
    model: Path | None = None
    data_dir: Path = Path(".funnel")
    embedded_storage: Literal["disk", "memory"] = Field(
        "disk", description="where the embedded broker keeps its topics: disk (in the data dir, "
        "kept across restarts) or memory (gone when it stops; faster)")
    state_store: Literal["rocksdb", "memory"] = Field(
        "rocksdb", description="where the worker keeps its lead table: rocksdb (on disk in the "
        "data dir, memory bounded by a cache; a restart reads only the changelog's tail) or "
        "memory (every lead in memory; a restart reads the whole changelog)")
    projection: Literal["process", "inline", "off"] = Field(
        "process", description="where the worker's PostgreSQL projection runs: process (a child "
        "process of `funnel worker`, on a core of its own, consumer group <group>-projection), "
        "inline (in the worker's own process and group) or off (run `funnel projection` "
        "elsewhere)")
    state_cache: int = Field(10_000, ge=100, description="decoded leads the worker keeps in "
                             "memory at most (least recently used go first)")
    state_cache_mb: int = Field(256, ge=8, description="the memory those decoded leads may take "
                                "at most (estimated from their records' and histories' bytes: "
                                "a lead with a long history takes what dozens of short ones do)")
    state_memory_mb: int = Field(256, ge=16, description="RocksDB's memory for the worker's "
                                 "tables (block cache and write buffers, all partitions and "
                                 "both tables together)")
    compression: Literal["zstd", "lz4", "gzip", "snappy", "none"] = Field(
        "zstd", description="how the worker, the projection and the collector compress what they "
        "write to the broker (record batches; consumers decompress by themselves): zstd stores "
        "the worker's JSON in ~1/14 of its bytes for ~3 µs a record")
    db_schema: str = Field("public", pattern=r"^[a-z_][a-z0-9_]*$")
    group_id: str | None = Field(None, description="Faust app id / consumer group; default from prefix")
    flush_interval: float = Field(0.25, gt=0, description="seconds between coalesced state flushes")
    flush_max_events: int = Field(2000, ge=1)
    fetch_wait: float = Field(0.25, gt=0, le=30, description="seconds a consumer's fetch waits "
                              "for records to come (Faust: 1.5; the embedded broker answers only "
                              "when the wait is over, so it is each hop's delay on the worker's "
                              "own topics; idle, a fetch per wait)")
    sink_max_items: int = Field(1000, ge=1, description="snapshots (or spend reports) written "
                                "to PostgreSQL in one transaction at most")
    sink_interval: float = Field(0.3, gt=0, description="seconds a sink's batch waits at most "
                                 "before it is written")
    stall_seconds: float = Field(60.0, gt=0, description="seconds a consumed partition may "
                                 "stay behind its end without progress before /healthz is 503")
    reread_seconds: float = Field(15.0, gt=0, description="seconds a consumed partition may "
                                  "stay behind its end with nothing taken before the worker "
                                  "reads it again from the first offset not taken")
    max_event_bytes: int = Field(32 * 1024, ge=256)
    session_timeout: float = Field(6.0, gt=0)
    cooling_interval: float = Field(60.0, ge=0, description="seconds between cooling passes; 0: off")
    timer_interval: float = Field(30.0, ge=0, description="seconds between checks of the SLA "
                                  "and MQL-expiry deadlines against the clock; 0: event time only")
    log_level: str = Field("warning", pattern=r"^(debug|info|warning|error)$")
    write_keys: SecretStr | None = Field(None, description="collector write keys, comma-separated;"
                                         " unset: one generated and kept in the data dir")
    http_host: str = Field("127.0.0.1", description="address the collector/dashboard listens on")
    http_port: int = Field(8088, ge=0, le=65535, description="port of the collector/dashboard")
    worker_port: int = Field(6066, ge=0, le=65535, description="the worker's /metrics and "
                             "/healthz port; 0: off")
    collector_max_inflight: int = Field(64 * 1024 * 1024, ge=1024, description="bytes accepted "
                                        "but not yet acknowledged by the broker before 503")
    collector_ack_timeout: float = Field(15.0, gt=0, description="seconds to wait for the broker "
                                         "to acknowledge a request's events before 503")

    @field_validator("broker")
    @classmethod
    def _broker_url(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        urls = []
        for part in v.split(","):
            part = part.strip()
            if not part:
                continue
            if "://" not in part:
                part = f"kafka://{part}"
            scheme = part.split("://", 1)[0]
            if scheme not in ("kafka", "aiokafka"):
                raise ValueError(f"broker URL {part!r}: scheme must be kafka://")
            urls.append(part)
        return ",".join(urls)

    @property
    def app_id(self) -> str:
        return self.group_id or f"{self.topic_prefix}worker"

    @property
    def projection_group(self) -> str:
        """The consumer group (Faust app id) of the projection: the worker's own when it runs
        inline, else its own."""
        return self.app_id if self.projection == "inline" else f"{self.app_id}-projection"

    def compression_type(self) -> str | None:
        """``compression`` as Kafka clients take it (None: uncompressed)."""
        return None if self.compression == "none" else self.compression

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def bootstrap_servers(self) -> list[str]:
        """host:port list for kafka-python clients."""
        assert self.broker, "broker is not set"
        return [u.split("://", 1)[1] for u in self.broker.split(",")]

    def write_key_list(self) -> list[str]:
        """The configured write keys; unset: one generated once and kept in the data dir."""
        if self.write_keys is not None:
            keys = [k.strip() for k in self.write_keys.get_secret_value().split(",") if k.strip()]
            if keys:
                return keys
        path = self.data_dir / "write_key"
        if path.exists():
            return [path.read_text("utf-8").strip()]
        import secrets

        path.parent.mkdir(parents=True, exist_ok=True)
        key = "wk_" + secrets.token_urlsafe(18)
        path.write_text(key + "\n", "utf-8")
        return [key]

    def dsn(self) -> str:
        assert self.database_url is not None, "database_url is not set"
        return self.database_url.get_secret_value()
