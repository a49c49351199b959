"""compare.html: one self-contained page; in headless Chromium its table and its plot render."""
from moalign.compare import markdown, table
from moalign.evals.plot import plot_fronts
from moalign.evals.report import markdown_tables, write_report


def _front(method: str, shift: float) -> dict:
    points = [{"preference": {"helpful": w, "harmless": 1 - w},
               "scores": {"helpful": 0.2 + shift * w, "harmless": 0.8 - 0.3 * w},
               "samples": [{"prompt": "how do i fix my bike ?", "response": f"{method} <b>at</b> {w}"}]}
              for w in (0.0, 0.5, 1.0)]
    return {"method": method, "objectives": ["helpful", "harmless"], "reference_point": [0, 0],
            "points": points, "pareto_indices": [0, 1, 2], "hypervolume": 0.3 + shift,
            "compute": {"train_seconds": 10.0, "eval_seconds": 1.0}, "steerability": {}}


def _report(tmp_path):
    fronts = [_front("base", 0.0), _front("soup", 0.4)]
    summary = {"suite": "evals/world.yaml", "seed": 0, "date": "2026-12-01",
               "objectives": ["helpful", "harmless"],
               "methods": table(fronts), "personalization": {}}
    png = plot_fronts(fronts, tmp_path / "fronts.png")
    return write_report(tmp_path, markdown(summary), fronts, png)


def test_the_markdown_tables_become_html_tables():
    html = markdown_tables("# title\n\n| a | b |\n|---|---|\n| 1 | **no** |\n| 2 | <x> |\n")
    assert html.count("<tr>") == 3 and "<strong>no</strong>" in html and "&lt;x&gt;" in html


def test_report_renders_its_table_plot_and_answers_in_chromium(tmp_path, browser):
    from selenium.webdriver.common.by import By

    path = _report(tmp_path)
    (tmp_path / "fronts.png").unlink()  # self-contained: the plot is inside the page
    browser.get(path.as_uri())
    rows = browser.find_elements(By.CSS_SELECTOR, "table tbody tr")
    assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows] == ["base", "soup"]
    assert rows[1].find_elements(By.TAG_NAME, "td")[1].text == "0.700"  # its HV
    size = browser.execute_script("const i = document.getElementById('fronts'); "
                                  "return [i.complete, i.naturalWidth, i.naturalHeight];")
    assert size[0] and size[1] > 300 and size[2] > 200  # the PNG decoded
    answers = [a.text for a in browser.find_elements(By.CLASS_NAME, "answer")]
    assert answers == [f"{m} <b>at</b> {w}" for m in ("base", "soup") for w in (0.0, 0.5, 1.0)]  # as text
