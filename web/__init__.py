"""HTTP and pages: the REST API, auth, static pages, and the app factory."""
