# gnuplot -e "csv='membership_reliability.csv'; out='membership_reliability.png'" benchmarks/plots/membership_reliability.gp
if (!exists("csv")) csv = 'membership_reliability.csv'
if (!exists("out")) out = 'membership_reliability.png'
set terminal pngcairo size 900,560 noenhanced
set output out
set datafile separator ','
set title 'Eager-push broadcast reliability after x% of N nodes crash at once'
set xlabel 'failed nodes (%)'
set ylabel 'reliability (%)'
set yrange [0:105]
set xrange [5:100]
set key bottom left
sel(p, r) = sprintf("< awk -F, '$1==\"%s\" && $4==%d {print $3\",\"$5*100}' %s", p, r, csv)
plot sel('hyparview', 0) using 1:2 with linespoints lw 2 pt 7 title 'HyParView, right after', \
     sel('hyparview', 1) using 1:2 with linespoints lw 2 pt 5 title 'HyParView, after 1 round', \
     sel('hyparview', 5) using 1:2 with linespoints lw 2 pt 9 title 'HyParView, after 5 rounds', \
     sel('cyclon', 0) using 1:2 with linespoints lw 2 dt 2 pt 6 title 'Cyclon, right after', \
     sel('cyclon', 5) using 1:2 with linespoints lw 2 dt 2 pt 8 title 'Cyclon, after 5 rounds'
