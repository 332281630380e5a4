"""The bottom layer: settings, errors, correlation and job context, logging, redaction,
Redis clients, argument checks and the Lua script loader. It imports no other layer."""
