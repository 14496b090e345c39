"""The Microsoft 365 Agents SDK baseline: the app's dialog (greeting, name, menu, retry prompt, the offer
of a person after repeated misunderstandings, the start of an operation) written for the Agents SDK
(microsoft-agents-hosting-aiohttp, -hosting-dialogs, AgentApplication with MemoryStorage), hosted the way
its Python samples host an agent, as its own process (`python -m bench.agents_baseline`). A bench
dependency only (requirements-dev.txt): production never imports it."""

TURN_ERROR_LOG = "agents baseline turn error"  # app.py logs it per failed turn; the benchmark counts it
