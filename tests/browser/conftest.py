"""The browser test's folder: its demo notebook is driven by test_browser.py, never collected by nbval."""

collect_ignore = ["explorer_demo.ipynb"]


def pytest_configure(config):
    """Register the ``browser`` marker (deselect with ``-m "not browser"``)."""
    config.addinivalue_line("markers", "browser: drives JupyterLab in headless Chromium (needs /usr/bin/chromium)")
