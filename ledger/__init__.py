"""The invoice lifecycle: approvals, issuing, corrections and the documents and events they produce."""
