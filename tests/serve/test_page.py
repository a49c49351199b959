"""The playground in headless Chromium: move a slider, submit, an answer appears."""
import shutil

import pytest


def test_slider_submit_answer(running, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 30)
    browser.get(running.url + "/")
    wait.until(lambda d: len(Select(d.find_element(By.ID, "model")).options) == 2)
    Select(browser.find_element(By.ID, "model")).select_by_value("soup")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".weight[data-objective='helpful']")))
    slider = browser.find_element(By.CSS_SELECTOR, ".weight[data-objective='helpful']")
    slider.click()
    for _ in range(6):
        slider.send_keys(Keys.ARROW_RIGHT)  # 0.5 -> 0.8 in steps of 0.05
    assert browser.find_element(By.CSS_SELECTOR, ".weight[data-objective='helpful'] + .value").text == "0.8"
    prompt = browser.find_element(By.ID, "prompt")
    prompt.clear()
    prompt.send_keys("how do i fix my bike ?")
    browser.find_element(By.ID, "send").click()
    wait.until(lambda d: d.find_element(By.ID, "usage").text != "")
    answer = browser.find_element(By.ID, "answer").text
    assert answer and answer != "…" and not browser.find_element(By.ID, "error").text
    assert '"helpful":0.8' in browser.find_element(By.ID, "usage").text
    browser.save_screenshot(str(tmp_path / "playground.png"))


STUB_DOM = r"""
const created = [];
class Node {
  constructor(tag) {
    this.tag = tag; this.children = []; this.attrs = {}; this.text = ""; created.push(this);
  }
  setAttribute(k, v) { this.attrs[k] = String(v); }
  append(...c) { this.children.push(...c); }
  replaceChildren(...c) { this.children = c; }
  addEventListener() {}
  set textContent(v) { this.text = String(v); }
  get textContent() { return this.text; }
  set innerHTML(v) { throw new Error("parsed as HTML: " + v); }
  get value() {  // a select's value: its first option's
    const first = this.children[0];
    return this.attrs.value ?? (first && first.attrs ? first.attrs.value : "");
  }
  set value(v) { this.attrs.value = v; }
}
const byId = {};
globalThis.document = {getElementById: (id) => (byId[id] ??= new Node("#" + id)),
                       createElement: (t) => new Node(t), querySelectorAll: () => []};
globalThis.localStorage = {getItem: () => null, setItem() {}};
const EVIL = "<img src=x onerror=alert(1)>";
globalThis.fetch = async () => ({ok: true, json: async () => ({data: [
  {id: EVIL, method: EVIL, steering: EVIL, objectives: [EVIL, "b"], users: [EVIL], front: false}]})});
process.on("unhandledRejection", (e) => {
  console.log(JSON.stringify({error: String(e)}));
  process.exit(0);
});
"""

REPORT = r"""
setTimeout(() => {
  const texts = created.flatMap((n) => [n.text, ...n.children.filter((c) => typeof c === "string")]);
  console.log(JSON.stringify({tags: created.map((n) => n.tag),
                              attrs: created.flatMap((n) => Object.keys(n.attrs)),
                              evil_as_text: texts.filter((t) => t === EVIL).length}));
}, 200);
"""


@pytest.mark.skipif(not shutil.which("node"), reason="needs node")
def test_manifest_names_are_text_not_html(tmp_path):
    """Objective, model and user names come from manifests: a crafted `<img onerror>` must stay text."""
    import json
    import re
    import subprocess
    from importlib import resources
    page = resources.files("moalign.serve").joinpath("page.html").read_text()
    script = re.search("<script>(.*?)</script>", page, re.S).group(1)
    (tmp_path / "run.js").write_text(STUB_DOM + script + REPORT)
    out = json.loads(subprocess.run(["node", str(tmp_path / "run.js")], capture_output=True, text=True,
                                    timeout=30, check=True).stdout)
    assert "error" not in out, out
    assert "img" not in out["tags"] and "onerror" not in out["attrs"]
    assert out["evil_as_text"] >= 3  # the model, objective and user names, shown as text
