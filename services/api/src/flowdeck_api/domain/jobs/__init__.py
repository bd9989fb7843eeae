"""External jobs: the tenant's own workers fetch waiting external job steps, then complete or fail them."""
