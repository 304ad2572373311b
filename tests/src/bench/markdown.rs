//! The report writer: the Markdown a bench prints and records under
//! bench/results/. Blocks are separated by one blank line, a list ends
//! where the next block starts, and a table row with the wrong number of
//! cells is a bug in the bench (it panics rather than write a broken table).

use std::fmt::Display;

#[derive(Default)]
pub struct Markdown {
    text: String,
    in_list: bool,
}

impl Markdown {
    /// A heading of `level` (1: the report's title).
    pub fn heading(&mut self, level: usize, title: impl Display) {
        self.block(&format!("{} {title}\n", "#".repeat(level)));
    }

    /// A paragraph (one logical line; Markdown joins wrapped lines anyway).
    pub fn para(&mut self, text: impl Display) {
        self.block(&format!("{text}\n"));
    }

    /// An item of a bullet list; consecutive items form one list.
    pub fn item(&mut self, text: impl Display) {
        self.text.push_str(&format!("- {text}\n"));
        self.in_list = true;
    }

    pub fn table(&mut self, table: &Table) {
        self.block(&table.render());
    }

    pub fn finish(mut self) -> String {
        self.end_list();
        self.text
    }

    fn block(&mut self, text: &str) {
        self.end_list();
        self.text.push_str(text);
        self.text.push('\n');
    }

    fn end_list(&mut self) {
        if std::mem::take(&mut self.in_list) {
            self.text.push('\n');
        }
    }
}

/// A table: columns left-aligned unless made right-aligned (figures).
pub struct Table {
    header: Vec<String>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[&str]) -> Self {
        Self {
            header: columns.iter().map(ToString::to_string).collect(),
            right: vec![false; columns.len()],
            rows: Vec::new(),
        }
    }

    /// Column alignments, one letter a column: `l` (text) or `r` (figures).
    pub fn align(mut self, spec: &str) -> Self {
        assert_eq!(
            spec.len(),
            self.header.len(),
            "alignment {spec:?} for columns {:?}",
            self.header
        );
        self.right = spec.chars().map(|c| c == 'r').collect();
        self
    }

    pub fn row<S: Display>(&mut self, cells: impl IntoIterator<Item = S>) {
        let cells: Vec<String> = cells.into_iter().map(|c| c.to_string()).collect();
        assert_eq!(
            cells.len(),
            self.header.len(),
            "a row of {} cells in a table of columns {:?}",
            cells.len(),
            self.header
        );
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let rule: Vec<String> = self
            .right
            .iter()
            .map(|r| if *r { "---:" } else { "---" }.to_string())
            .collect();
        let mut out = line(&self.header);
        out.push_str(&format!("|{}|\n", rule.join("|")));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_lists_and_tables() {
        let mut md = Markdown::default();
        md.heading(1, "Title");
        md.item("a");
        md.item("b");
        md.para("text");
        let mut t = Table::new(&["what", "n"]).align("lr");
        t.row(["x", "1"]);
        md.table(&t);
        md.item("last");
        assert_eq!(
            md.finish(),
            "# Title\n\n- a\n- b\n\ntext\n\n| what | n |\n|---|---:|\n| x | 1 |\n\n- last\n\n"
        );
    }

    #[test]
    #[should_panic(expected = "a row of 1 cells")]
    fn a_short_row_is_a_bug() {
        Table::new(&["a", "b"]).row(["x"]);
    }
}
