"""vocdet's use of a kfp SDK internal, behind a check of the kfp release it was tested on.

`vocdet submit` and `schedule` must fail at once, in one line naming the host, when the KFP API
cannot be reached or refuses the token. The kfp 2.9 `Client`'s health check retries five times over
25 s and then says only "Failed getting healthz endpoint after 5 attempts" (`Client.get_kfp_healthz`,
kfp 2.9.0 sdk/python/kfp/client/client.py; kubeflow/pipelines#4846), and its constructor skips the
check when a namespace is given. `fail_fast_client_class` overrides `get_kfp_healthz` with one attempt through the Client's
private `_healthz_api`, so that the API's own error reaches `pipeline/kubeflow/client.py`, on the
kfp releases it was tested on (`CLIENT_TESTED`).
"""

from __future__ import annotations

from vocdet.components import compat

# The kfp SDK releases whose Client keeps its health API in `_healthz_api` (prefixes: "2.9." is 2.9.x).
CLIENT_TESTED = ("2.9.",)


def check_client(version: str | None = None) -> None:
    """Raises `compat.UntestedVersion` under a kfp outside `CLIENT_TESTED` (default: the installed kfp)."""
    compat.check_tested(
        "kfp",
        version,
        CLIENT_TESTED,
        workaround="fail-fast KFP health check (kfp Client's private _healthz_api)",
        issue="kfp 2.9.0 sdk/python/kfp/client/client.py Client.get_kfp_healthz, kubeflow/pipelines#4846",
        test="tests/test_failures.py",
        constant="compat.kfp.CLIENT_TESTED",
        alternative="install kfp==2.9.0 (requirements.lock)",
    )


def fail_fast_client_class():
    """kfp's `Client`, whose `get_kfp_healthz` asks once (no retries) and raises the API's own error."""
    check_client()
    import kfp

    class Client(kfp.Client):
        _healthz = None

        def get_kfp_healthz(self, sleep_duration: int = 5):  # noqa: ARG002 (one attempt: no retry to wait for)
            if self._healthz is None:
                self._healthz = self._healthz_api.healthz_service_get_healthz()
            return self._healthz

    return Client
