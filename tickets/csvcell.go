package tickets

// CSVCell defuses free text that a spreadsheet would run as a formula,
// the way the ledger writes it, for other CSV exports of ticket data.
func CSVCell(s string) string { return cell(s) }
