"""The review desk: a server-rendered web app where finance, customer success and sales sign in,
see the invoices waiting for them and act on them through the same lifecycle functions as the CLI
(ledger/lifecycle.py). `billing serve`; docs in the README ("Review desk"). The app factory is
`desk.app.create_app(settings)` (also `desk.create_app`, imported on first use: the CLI starts fast)."""


def __getattr__(name: str):
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
