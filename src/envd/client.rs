//! HTTP client for the envd protocol.
