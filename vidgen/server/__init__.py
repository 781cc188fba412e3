"""`vidgen serve`: the server (serve.py), its transport, worker, jobs and control. Light: the client
imports nothing heavy through it."""
