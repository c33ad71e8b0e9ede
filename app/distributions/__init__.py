"""Revenue sharing: revenue payments, distributions of an app's revenue over its holders, and the monthly
revenue report."""
