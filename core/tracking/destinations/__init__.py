"""Conversion destinations: Meta Conversions API, Google (Data Manager API or Google Ads API), GA4."""
