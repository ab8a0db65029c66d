"""mc-router: a Minecraft Java Edition router, a drop-in for itzg/mc-router.

Layout (dependencies point downwards only):

    cli, settings      argv + env -> Settings
    app                the one place where everything is wired
    relay/, sources/, scaling/, automc/, api, webhooks, metrics   asyncio adapters
    routing/           pure route table and hostname normalisation
    protocol/          pure (sans-I/O) Minecraft and PROXY protocol codecs
"""

__version__ = "0.1.0"
