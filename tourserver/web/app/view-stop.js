// Being built (issue 15): this view is not there yet.
export async function mount(main) {
  main.innerHTML = `<p role="status">This view is being built.</p>`;
}
