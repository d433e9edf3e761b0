// The conversation list pages on scroll (issue 19): GET /accounts/{id}/conversations?page=N,
// 25 a page, the next one once the list is scrolled near its end, until a page comes back
// short. Any change of filter starts again at page 1.

const PER_PAGE = 25;
const NEAR_END_PX = 80;

export class ListPager {
  // `load(page)` fetches one page under the current filters and answers its conversations.
  constructor(load) {
    this.load = load;
    this.page = 0;
    this.done = false;
    this.loading = null;
  }

  // Page 1 again (a filter changed, a reconnect that could not resume).
  async reset() {
    this.page = 0;
    this.done = false;
    this.loading = null;
    return this.next();
  }

  async next() {
    if (this.done) return;
    if (this.loading) return this.loading;
    const page = this.page + 1;
    const loading = (this.loading = this.load(page).then(
      (found) => {
        if (this.loading !== loading) return; // reset since
        this.page = page;
        this.done = found.length < PER_PAGE;
        this.loading = null;
      },
      (err) => {
        if (this.loading === loading) this.loading = null;
        throw err;
      },
    ));
    return loading;
  }

  // Calls `more()` whenever `box` is scrolled near its end.
  static onScrollEnd(box, more) {
    box.addEventListener("scroll", () => {
      if (box.scrollTop + box.clientHeight >= box.scrollHeight - NEAR_END_PX) more();
    });
  }
}
