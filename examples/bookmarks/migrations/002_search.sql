-- Full-text search over titles, notes and URLs with SQLite's FTS5. The
-- index reads its text from `bookmarks` (external content) and triggers
-- keep it in step with every insert, update and delete.
CREATE VIRTUAL TABLE bookmarks_search USING fts5 (
  title, notes, url,
  content = 'bookmarks', content_rowid = 'id'
);

CREATE TRIGGER bookmarks_search_insert AFTER INSERT ON bookmarks BEGIN
  INSERT INTO bookmarks_search (rowid, title, notes, url)
  VALUES (new.id, new.title, new.notes, new.url);
END;

CREATE TRIGGER bookmarks_search_delete AFTER DELETE ON bookmarks BEGIN
  INSERT INTO bookmarks_search (bookmarks_search, rowid, title, notes, url)
  VALUES ('delete', old.id, old.title, old.notes, old.url);
END;

CREATE TRIGGER bookmarks_search_update AFTER UPDATE ON bookmarks BEGIN
  INSERT INTO bookmarks_search (bookmarks_search, rowid, title, notes, url)
  VALUES ('delete', old.id, old.title, old.notes, old.url);
  INSERT INTO bookmarks_search (rowid, title, notes, url)
  VALUES (new.id, new.title, new.notes, new.url);
END;
